-- factum event store schema, version 4: appends inside a caller's transaction survive a
-- lost race, and projection batches are fenced.
--
-- 1. A plain append at an exact version is one checked INSERT that takes no per-stream
--    lock, so an append inside a caller's transaction (which reads the head under the
--    stream's advisory lock) can lose the version to it and meet the unique index. Before
--    this version that aborted the caller's whole transaction. {events}_append_in runs the
--    append in a subtransaction (a plpgsql exception block is a savepoint): a lost version
--    rolls back only the append, and the append runs again on a fresh snapshot, where it
--    sees the winner and reports the stream's true version. A duplicate event id rolls
--    back only the append too, and is reported as out_duplicate.
--
--    Under REPEATABLE READ or SERIALIZABLE the caller's snapshot cannot see the winner:
--    that is a serialization failure, as PostgreSQL itself reports such a race, and the
--    caller retries the transaction.
-- p_expected: -1 any, -2 stream exists, 0 no stream, n > 0 exactly n.
CREATE OR REPLACE FUNCTION {schema}.{events}_append_in(
    p_aggregate_type  TEXT,
    p_aggregate_id    TEXT,
    p_expected        BIGINT,
    p_event_ids       UUID[],
    p_event_types     TEXT[],
    p_event_versions  INTEGER[],
    p_topics          TEXT[],
    p_data            JSONB[],
    p_metadata        JSONB[],
    p_occurred_at     TIMESTAMPTZ[],
    p_correlation_ids UUID[],
    p_causation_ids   UUID[],
    p_channel         TEXT
) RETURNS TABLE (out_version BIGINT, out_position BIGINT, out_transaction BIGINT, out_conflict BOOLEAN,
                 out_duplicate BOOLEAN)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_constraint TEXT;
    v_attempt    INTEGER := 0;
BEGIN
    LOOP
        v_attempt := v_attempt + 1;
        BEGIN
            -- The inner function materializes its rows before any reach this result, so
            -- an error inside it adds none.
            RETURN QUERY SELECT a.out_version, a.out_position, a.out_transaction, a.out_conflict, false
                FROM {schema}.{events}_append(p_aggregate_type, p_aggregate_id, p_expected, p_event_ids,
                    p_event_types, p_event_versions, p_topics, p_data, p_metadata, p_occurred_at,
                    p_correlation_ids, p_causation_ids, p_channel) AS a;
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
            IF v_constraint = '{events}_event_id_key' THEN
                RETURN QUERY SELECT NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, false, true;
                RETURN;
            END IF;
            IF v_constraint <> '{events}_stream_version_key' THEN
                RAISE;
            END IF;
            -- A writer outside the stream's lock took the version and has committed.
            IF current_setting('transaction_isolation') <> 'read committed' OR v_attempt >= 5 THEN
                RAISE EXCEPTION 'append to %/% lost its version to a concurrent writer that this transaction cannot see; retry in a new transaction',
                        p_aggregate_type, p_aggregate_id
                    USING ERRCODE = 'serialization_failure', CONSTRAINT = '{streams}_transaction_order';
            END IF;
        END;
    END LOOP;
END
$fn$;

-- 2. A projection's lease (a session advisory lock on one connection) says who may start a
--    batch, not whether the previous holder's batch transaction, on another connection, has
--    ended. Each exactly-once batch transaction therefore enters this fence first: it takes
--    a transaction-level advisory lock on the projection, held until it commits or rolls
--    back, and only then reads the checkpoint, on a snapshot taken after the lock. A new
--    holder's first batch waits here for the old holder's open batch, and then sees the
--    checkpoint that batch wrote. Returns whether the checkpoint still is the one given (a
--    missing row counts as the start).
CREATE OR REPLACE FUNCTION {schema}.{positions}_fence(
    p_projection  TEXT,
    p_position    BIGINT,
    p_transaction BIGINT
) RETURNS BOOLEAN
LANGUAGE plpgsql AS $fn$
DECLARE
    v_position    BIGINT;
    v_transaction BIGINT;
BEGIN
    -- "fenc" in ASCII, apart from the leases' "fact" and the appends' one-key locks.
    PERFORM pg_advisory_xact_lock(1717923427, hashtext('{schema}.' || p_projection));
    SELECT p.last_processed_position, p.last_processed_transaction INTO v_position, v_transaction
        FROM {schema}.{positions} p WHERE p.projection_name = p_projection;
    IF NOT FOUND THEN
        RETURN p_position = 0 AND p_transaction = 0;
    END IF;
    RETURN v_position = p_position AND v_transaction = p_transaction;
END
$fn$;
