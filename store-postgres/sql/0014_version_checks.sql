-- factum event store schema, version 14: version checks that read only what they check.
--
-- An append at a version its writer knows is stored only if the stream is at that
-- version. {events}_head finds the stream's newest event by reading the stream index
-- backwards from the stream's end; but an index page is read whole, so on a long stream
-- each check read a page of that stream's entries, a hundred or more, where one was
-- needed. A stream is at version x if its newest event at or after x is x itself (and,
-- for x = 0, if it has none): the check below asks the index for what lies at or after
-- x, one or two entries, whatever the stream's length. The answer is the same as
-- comparing the head: versions are contiguous above whatever retention deleted, and
-- retention never deletes a stream's newest event.
--
-- One call checks every append of a statement (a coalesced flush, or an atomic
-- multi-stream append), and answers with one flag per append, in order. Planned, like
-- every stream lookup, with only the stream index available whatever the statistics
-- (schema version 9). With p_legacy, a head deleted under schema version 2 counts too.
CREATE FUNCTION {schema}.{events}_at(p_aggregate_types TEXT[], p_aggregate_ids TEXT[], p_expected BIGINT[],
        p_legacy BOOLEAN)
RETURNS BOOLEAN[]
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
SET enable_incremental_sort = off SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN ARRAY(
        SELECT coalesce(greatest(
            (SELECT e.version FROM {schema}.{events} e
             WHERE e.aggregate_type = a.aggregate_type AND e.aggregate_id = a.aggregate_id
               AND e.version >= a.expected
             ORDER BY e.version DESC LIMIT 1),
            CASE WHEN p_legacy THEN
                (SELECT s.version FROM {schema}.{streams} s
                 WHERE s.aggregate_type = a.aggregate_type AND s.aggregate_id = a.aggregate_id)
            END
        ), 0) = a.expected
        FROM unnest(p_aggregate_types, p_aggregate_ids, p_expected) WITH ORDINALITY
            AS a(aggregate_type, aggregate_id, expected, idx)
        ORDER BY a.idx);
END
$fn$;

-- Superseded by {events}_at: the flush's version check read each head through it.
DROP FUNCTION {schema}.{events}_heads(TEXT[], TEXT[], BOOLEAN);

-- Events found by their ids, through the event-id index whatever the statistics. A plan
-- of `event_id = ANY(...)` cached while the table was small (a sequential scan) would
-- otherwise stay with the connection: durable.sql, which a publisher runs for every page
-- it hands on, then read the whole table each time.
--
-- How many of the events p_ids this server holds (durable.sql).
CREATE FUNCTION {schema}.{events}_held(p_ids UUID[])
RETURNS BIGINT
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN (SELECT count(*) FROM {schema}.{events} e WHERE e.event_id = ANY(p_ids));
END
$fn$;

-- The events stored under p_ids, with everything else their transactions wrote to the
-- stream (p_aggregate_type, p_aggregate_id): what telling a retry of an append from a
-- duplicate needs (by_ids.sql).
CREATE FUNCTION {schema}.{events}_by_ids(p_ids UUID[], p_aggregate_type TEXT, p_aggregate_id TEXT)
RETURNS SETOF {schema}.{events}
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN QUERY
    SELECT e.* FROM {schema}.{events} e WHERE e.event_id = ANY(p_ids)
    UNION
    -- (`+ 0` keeps the category index, which leads with aggregate_type and
    -- transaction_id, out of it: the stream index finds the stream's events.)
    SELECT e.* FROM {schema}.{events} e
    WHERE e.aggregate_type = p_aggregate_type AND e.aggregate_id = p_aggregate_id
      AND e.transaction_id + 0 IN (SELECT i.transaction_id FROM {schema}.{events} i WHERE i.event_id = ANY(p_ids));
END
$fn$;
