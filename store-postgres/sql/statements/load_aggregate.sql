-- An aggregate's cold load in one round trip: its snapshot first, if it has one (a row
-- with no event type, whose data is the state), then the first $4 events after it if its
-- schema version is $3, else from the stream's start; both through the primary key and
-- the stream index ({snapshots}_load, {events}_payloads).
WITH s AS MATERIALIZED (
    SELECT version, schema_version, state, created_at FROM {schema}.{snapshots}_load($1, $2)
)
SELECT version, event_type, event_version, event_data, created_at FROM (
    SELECT version, NULL::text AS event_type, schema_version AS event_version, state::text AS event_data,
        created_at
    FROM s
    UNION ALL
    SELECT p.version, p.event_type, p.event_version, p.event_data, NULL::timestamptz
    FROM {schema}.{events}_payloads($1, $2, coalesce((SELECT version FROM s WHERE schema_version = $3), 0), $4) p
) l
ORDER BY l.event_type IS NOT NULL, l.version
