-- Several appends at versions their writers know, to distinct streams, in one statement:
-- a coalesced flush of the command path, or one atomic multi-stream append. $1..$3 are
-- per append (aggregate type, aggregate id, the version it expects, 0 for a new stream);
-- $4..$14 per event, $4 being the number (from 1) of its append and $5 its place in it
-- (from 1); $15 says whether to consult the heads deleted under schema version 2.
-- {events}_at checks every append's version in one call, computed once for the
-- statement (a materialized CTE: as a subquery in FROM, the planner would call it once
-- per event): one flag per append, each read through the stream index at the version it
-- expects. The last condition is `c.ok[b.idx]` when each append stands alone (it inserts
-- nothing if its stream is not at its version, and the others are unaffected), or that
-- every append passed its check (all or nothing). The unique indexes refuse a stored
-- event id, or a concurrent writer of the same version, failing the whole statement.
-- (Looking the ids up here would cost as much, and its generic plan, cached while the
-- table is empty, may scan the table for them.)
WITH c AS MATERIALIZED (
    SELECT {schema}.{events}_at($1::text[], $2::text[], $3::int8[], $15::bool) AS ok
)
INSERT INTO {schema}.{events} ({insert_columns})
SELECT b.event_id, ($1::text[])[b.idx], ($2::text[])[b.idx], ($3::int8[])[b.idx] + b.ord, b.event_type,
    b.event_version, b.topic, b.data, b.metadata, b.occurred_at, b.correlation_id, b.causation_id
FROM unnest($4::int8[], $5::int8[], $6::uuid[], $7::text[], $8::int4[], $9::text[], $10::jsonb[],
    $11::jsonb[], $12::timestamptz[], $13::uuid[], $14::uuid[])
    AS b(idx, ord, event_id, event_type, event_version, topic, data, metadata, occurred_at,
        correlation_id, causation_id), c
WHERE {all}
ORDER BY b.idx, b.ord
RETURNING event_id, version, global_position, transaction_id
