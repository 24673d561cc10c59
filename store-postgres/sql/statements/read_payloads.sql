-- What folding a stream's events after version $3 needs, in version order, through the
-- stream index ({events}_stream).
SELECT version, event_type, event_version, event_data::text
FROM {schema}.{events}_stream($1, $2, $3, 9223372036854775807)
ORDER BY version
