-- Deletes a stream's snapshot.
DELETE FROM {schema}.{snapshots} WHERE aggregate_type = $1 AND aggregate_id = $2
