-- factum event store schema, version 5: events leave only through retention, and
-- retention is a function the owner defines.
--
-- With least-privilege roles (see docs/operations.md) the service connects as a runtime
-- role that owns nothing and has no DELETE, UPDATE or TRUNCATE privilege on {events}: it
-- cannot disable the immutability trigger (only the owner can), and no session variable
-- gives it a privilege it does not have. Retention is this SECURITY DEFINER function: it
-- runs with its owner's rights, applies the retention rules itself, and switches the
-- trigger's factum.allow_delete on around its own DELETE only.
--
-- One call deletes at most p_limit events, in the caller's transaction:
-- - only events recorded before p_cutoff, and never a stream's newest event (an append
--   checks the newest stored version);
-- - with p_guarded, only what every consumer in p_consumers has processed (nothing for a
--   consumer without a checkpoint), and with p_unsnapshotted also only what a snapshot
--   covers;
-- - under a SHARE ROW EXCLUSIVE lock that keeps appends out until the transaction ends,
--   so that no append checks a head that this call deletes.
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
        LIMIT p_limit);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    PERFORM set_config('factum.allow_delete', 'off', true);
    RETURN v_deleted;
END
$fn$;

-- Nobody but the owner and the roles it grants may call it.
REVOKE ALL ON FUNCTION {schema}.{events}_retain(TIMESTAMPTZ, BOOLEAN, TEXT[], BOOLEAN, INTEGER) FROM PUBLIC;
