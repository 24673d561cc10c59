-- factum event store schema, version 6: operators' requests to projections, and the
-- retention rules in a function of their own.

-- A request an operator made of a projection (the `factum` command line records them):
-- 'reset' (move the checkpoint to request_transaction/request_position, and with
-- request_clear clear the read model first) or 'retry' (feed the recorded failures
-- again). The instance that holds the projection's lease carries it out, then clears it
-- if requested_at is still the same. One pending request per projection.
ALTER TABLE {schema}.{positions}
    ADD COLUMN request             TEXT CHECK (request IN ('reset', 'retry')),
    ADD COLUMN request_transaction BIGINT,
    ADD COLUMN request_position    BIGINT,
    ADD COLUMN request_clear       BOOLEAN,
    ADD COLUMN requested_at        TIMESTAMPTZ;

-- Which events retention may delete, by the rules of {events}_retain (see version 5):
-- recorded before p_cutoff, never a stream's newest event, and with p_guarded only what
-- every consumer in p_consumers has processed (and with p_unsnapshotted what a snapshot
-- covers). Deleting and counting ("what would retention remove?") share these rules.
CREATE FUNCTION {schema}.{events}_retainable(
    p_cutoff        TIMESTAMPTZ,
    p_guarded       BOOLEAN,
    p_consumers     TEXT[],
    p_unsnapshotted BOOLEAN
) RETURNS SETOF BIGINT
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT e.global_position FROM {schema}.{events} e
    WHERE e.recorded_at < p_cutoff
      AND EXISTS (SELECT 1 FROM {schema}.{events} n WHERE n.aggregate_type = e.aggregate_type
            AND n.aggregate_id = e.aggregate_id AND n.version > e.version)
      AND (NOT p_guarded OR (
            NOT (coalesce(p_unsnapshotted, false) AND NOT EXISTS (SELECT 1 FROM {schema}.{snapshots} s
                WHERE s.aggregate_type = e.aggregate_type AND s.aggregate_id = e.aggregate_id
                  AND s.version >= e.version))
            AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p_consumers, '{}'::text[])) AS c(name)
                LEFT JOIN {schema}.{positions} p ON p.projection_name = c.name
                WHERE p.projection_name IS NULL
                   OR (e.transaction_id, e.global_position)
                      > (p.last_processed_transaction, p.last_processed_position))))
$fn$;

-- The retention function of version 5, now deleting what {events}_retainable selects.
CREATE OR REPLACE FUNCTION {schema}.{events}_retain(
    p_cutoff        TIMESTAMPTZ,
    p_guarded       BOOLEAN,
    p_consumers     TEXT[],
    p_unsnapshotted BOOLEAN,
    p_limit         INTEGER
) RETURNS BIGINT
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_deleted BIGINT;
BEGIN
    IF p_cutoff IS NULL OR p_limit IS NULL OR p_limit < 1 OR p_guarded IS NULL THEN
        RAISE EXCEPTION 'retention needs a cutoff, a positive limit and a mode'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE {schema}.{events} IN SHARE ROW EXCLUSIVE MODE;
    PERFORM set_config('factum.allow_delete', 'on', true);
    DELETE FROM {schema}.{events} WHERE global_position IN (
        SELECT r FROM {schema}.{events}_retainable(p_cutoff, p_guarded, p_consumers, p_unsnapshotted) AS r
        LIMIT p_limit);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    PERFORM set_config('factum.allow_delete', 'off', true);
    RETURN v_deleted;
END
$fn$;
