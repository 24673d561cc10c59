-- The rest of a long load, after its first page: what folding a stream's events after
-- version $3 needs, in version order, sent as it is read. Runs only in a transaction that
-- ran stream_index_only.sql first.
SELECT version, event_type, event_version, event_data::text
FROM {schema}.{events}
WHERE aggregate_type = $1 AND aggregate_id = $2 AND version > $3
ORDER BY version
