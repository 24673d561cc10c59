-- What folding a stream's events after version $3 needs, in version order.
SELECT version, event_type, event_version, event_data::text
FROM {schema}.{events}
WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > $3
ORDER BY version
