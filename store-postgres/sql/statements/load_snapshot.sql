-- A stream's snapshot.
SELECT version, schema_version, state, created_at
FROM {schema}.{snapshots}
WHERE aggregate_type = $1
AND aggregate_id = $2
