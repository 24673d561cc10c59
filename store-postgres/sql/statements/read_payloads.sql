-- What folding a stream's events after version $3 needs, at most $4 of them, in version
-- order, through the stream index ({events}_payloads).
SELECT version, event_type, event_version, event_data
FROM {schema}.{events}_payloads($1, $2, $3, $4)
ORDER BY version
