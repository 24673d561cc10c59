-- factum event store schema, version 3: appends no longer write a head row.
--
-- Until version 2 every append updated its stream's row in {streams}, a second write per
-- append. Now the unique index on (aggregate_type, aggregate_id, version) is the version
-- check: an append at version n + 1 checks, in the same statement, that n is the stream's
-- newest stored version, and the index refuses a second n + 1. Retention keeps each
-- stream's newest event, so the newest stored version always is the stream's version.
--
-- {streams} now only holds the heads that retention deleted under version 2 (it deleted
-- newest events too); the rows the events still cover are removed here. The store consults
-- the table while it holds any row, and writes none.
DELETE FROM {schema}.{streams} s
    WHERE s.version <= coalesce((SELECT max(e.version) FROM {schema}.{events} e
        WHERE e.aggregate_type = s.aggregate_type AND e.aggregate_id = s.aggregate_id), 0);

-- The append of the modes that need the head in the database (any, stream exists) and of
-- appends inside a caller's transaction. Same signature and results as version 1's.
-- p_expected: -1 any, -2 stream exists, 0 no stream, n > 0 exactly n.
CREATE OR REPLACE FUNCTION {schema}.{events}_append(
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
) RETURNS TABLE (out_version BIGINT, out_position BIGINT, out_transaction BIGINT, out_conflict BOOLEAN)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_xid      BIGINT;
    v_head     BIGINT;
    v_head_xid BIGINT;
    v_old      BIGINT;
    v_old_xid  BIGINT;
BEGIN
    -- Retention locks the table against appends while it deletes (SHARE ROW EXCLUSIVE):
    -- take the append's lock before reading the head, so that no deletion falls between.
    LOCK TABLE {schema}.{events} IN ROW EXCLUSIVE MODE;
    -- Appends of this function to one stream queue here instead of failing on the unique
    -- index; the lock needs no transaction id, so a transaction that starts here gets one
    -- newer than that of the stream's previous writer.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_aggregate_type || chr(31) || p_aggregate_id, 0));
    v_xid := pg_current_xact_id()::text::bigint;
    SELECT e.version, e.transaction_id INTO v_head, v_head_xid FROM {schema}.{events} e
        WHERE e.aggregate_type = p_aggregate_type AND e.aggregate_id = p_aggregate_id
        ORDER BY e.version DESC LIMIT 1;
    SELECT s.version, s.last_transaction INTO v_old, v_old_xid FROM {schema}.{streams} s
        WHERE s.aggregate_type = p_aggregate_type AND s.aggregate_id = p_aggregate_id;
    IF v_old IS NOT NULL AND v_old > coalesce(v_head, 0) THEN
        v_head := v_old;
        v_head_xid := v_old_xid;
    END IF;
    v_head := coalesce(v_head, 0);

    IF (p_expected = -2 AND v_head = 0) OR (p_expected >= 0 AND v_head <> p_expected) THEN
        RETURN QUERY SELECT v_head, NULL::BIGINT, NULL::BIGINT, true;
        RETURN;
    END IF;

    -- The log is read in (transaction, position) order. If a newer transaction wrote the
    -- stream's newest event, ours would sort before it: refuse, and let the caller retry
    -- in a new (newer) transaction.
    IF v_head_xid IS NOT NULL AND v_head_xid > v_xid THEN
        RAISE EXCEPTION 'append to %/% from transaction % would sort before transaction % in the log; retry in a new transaction',
                p_aggregate_type, p_aggregate_id, v_xid, v_head_xid
            USING ERRCODE = 'serialization_failure', CONSTRAINT = '{streams}_transaction_order';
    END IF;

    RETURN QUERY
    INSERT INTO {schema}.{events} AS e (event_id, aggregate_type, aggregate_id, version, event_type,
            event_version, topic, event_data, metadata, occurred_at, correlation_id, causation_id)
        SELECT b.event_id, p_aggregate_type, p_aggregate_id, v_head + b.ord, b.event_type,
            b.event_version, b.topic, b.data, b.metadata, b.occurred_at, b.correlation_id, b.causation_id
        FROM unnest(p_event_ids, p_event_types, p_event_versions, p_topics, p_data, p_metadata,
                p_occurred_at, p_correlation_ids, p_causation_ids)
            WITH ORDINALITY AS b(event_id, event_type, event_version, topic, data, metadata,
                occurred_at, correlation_id, causation_id, ord)
        ORDER BY b.ord
        RETURNING e.version, e.global_position, e.transaction_id, false;

    IF p_channel IS NOT NULL THEN
        PERFORM pg_notify(p_channel, p_aggregate_type);
    END IF;
END
$fn$;
