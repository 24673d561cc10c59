-- factum event store schema, version 9: a stream's head and a stream's events are found
-- through the stream index, whatever the statistics and whatever plan is cached.
--
-- Until this version the appends checked a stream's head with a subquery of their own
-- (`ORDER BY version DESC LIMIT 1`), and the stream reads filtered the events table
-- directly. The planner chose how, and a connection kept its generic plan for its life.
-- On a never-analyzed table of a few hundred one-event streams it judged the category
-- index (aggregate_type, transaction_id, global_position) as cheap as the stream index
-- (aggregate_type, aggregate_id, version), and then every append read every event of its
-- category: an append's cost grew with the table (50 million index tuples for 10,000
-- commands). On a small analyzed table it chose to read the whole table instead.
--
-- Now every such statement runs inside one of the functions below (or the append
-- function), and these are planned under settings that leave exactly one plan without a
-- penalty: sequential scans, bitmap scans and sorts are switched off, so only an index
-- scan that yields the stream's events in version order remains, and only the stream
-- index does. (Switched off means "costs 10^10 more", so a statement that nothing else
-- could serve would still run; here the stream index always can.) plan_cache_mode makes
-- each function plan its statement once per session: a custom plan per call would cost
-- more than the lookup.
--
-- The flush of the coalescing writer looks up all its streams' heads in one call.

-- A stream's version: its newest stored event's (one backward step on the stream index),
-- or, when p_legacy, a head that retention deleted under schema version 2 if newer.
CREATE FUNCTION {schema}.{events}_head(p_aggregate_type TEXT, p_aggregate_id TEXT, p_legacy BOOLEAN)
RETURNS BIGINT
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
SET enable_incremental_sort = off SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN coalesce(greatest(
        (SELECT e.version FROM {schema}.{events} e
         WHERE e.aggregate_type = p_aggregate_type AND e.aggregate_id = p_aggregate_id
         ORDER BY e.version DESC LIMIT 1),
        CASE WHEN p_legacy THEN
            (SELECT s.version FROM {schema}.{streams} s
             WHERE s.aggregate_type = p_aggregate_type AND s.aggregate_id = p_aggregate_id)
        END
    ), 0);
END
$fn$;

-- The versions of several streams, given as parallel arrays: (their number from 1, the
-- version), as {events}_head finds each.
CREATE FUNCTION {schema}.{events}_heads(p_aggregate_types TEXT[], p_aggregate_ids TEXT[], p_legacy BOOLEAN)
RETURNS TABLE (idx BIGINT, version BIGINT)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
SET enable_incremental_sort = off SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
    SELECT a.idx, coalesce(greatest(
        (SELECT e.version FROM {schema}.{events} e
         WHERE e.aggregate_type = a.aggregate_type AND e.aggregate_id = a.aggregate_id
         ORDER BY e.version DESC LIMIT 1),
        CASE WHEN p_legacy THEN
            (SELECT s.version FROM {schema}.{streams} s
             WHERE s.aggregate_type = a.aggregate_type AND s.aggregate_id = a.aggregate_id)
        END
    ), 0)
    FROM unnest(p_aggregate_types, p_aggregate_ids) WITH ORDINALITY AS a(aggregate_type, aggregate_id, idx);
END
$fn$;

-- A stream's events with versions after p_after, up to p_to, in version order.
CREATE FUNCTION {schema}.{events}_stream(p_aggregate_type TEXT, p_aggregate_id TEXT, p_after BIGINT, p_to BIGINT)
RETURNS SETOF {schema}.{events}
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
SET enable_incremental_sort = off SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
    SELECT e.* FROM {schema}.{events} e
    WHERE e.aggregate_type = p_aggregate_type AND e.aggregate_id = p_aggregate_id
      AND e.version > p_after AND e.version <= p_to
    ORDER BY e.version;
END
$fn$;

-- What folding a stream's events after p_after needs, at most p_limit of them, in version
-- order: an aggregate's load, page by page. A function's rows are all computed before the
-- first is sent, so a long stream is read in pages that the store reads ahead while the
-- aggregate folds the page before.
CREATE FUNCTION {schema}.{events}_payloads(p_aggregate_type TEXT, p_aggregate_id TEXT, p_after BIGINT, p_limit INTEGER)
RETURNS TABLE (version BIGINT, event_type TEXT, event_version INTEGER, event_data TEXT)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
SET enable_incremental_sort = off SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
    SELECT e.version, e.event_type::text, e.event_version, e.event_data::text FROM {schema}.{events} e
    WHERE e.aggregate_type = p_aggregate_type AND e.aggregate_id = p_aggregate_id AND e.version > p_after
    ORDER BY e.version
    LIMIT p_limit;
END
$fn$;

-- The append function (modes any and stream-exists, and appends in a caller's
-- transaction) reads the head too.
ALTER FUNCTION {schema}.{events}_append(TEXT, TEXT, BIGINT, UUID[], TEXT[], INTEGER[], TEXT[], JSONB[],
        JSONB[], TIMESTAMPTZ[], UUID[], UUID[], TEXT)
    SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
    SET enable_incremental_sort = off SET plan_cache_mode = force_generic_plan;

-- A stream's snapshot, found through the snapshots' primary key (an empty table, once
-- analyzed, was read whole for each load, for as long as the plan stayed cached).
CREATE FUNCTION {schema}.{snapshots}_load(p_aggregate_type TEXT, p_aggregate_id TEXT)
RETURNS SETOF {schema}.{snapshots}
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
    SELECT s.* FROM {schema}.{snapshots} s
    WHERE s.aggregate_type = p_aggregate_type AND s.aggregate_id = p_aggregate_id;
END
$fn$;

-- Deletes a stream's snapshot, found as {snapshots}_load finds it; whether there was one.
CREATE FUNCTION {schema}.{snapshots}_delete(p_aggregate_type TEXT, p_aggregate_id TEXT)
RETURNS BOOLEAN
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    DELETE FROM {schema}.{snapshots} s
    WHERE s.aggregate_type = p_aggregate_type AND s.aggregate_id = p_aggregate_id;
    RETURN FOUND;
END
$fn$;
