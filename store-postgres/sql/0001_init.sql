-- factum event store schema, version 1.
-- Placeholders in braces are replaced with validated identifiers before this runs.

CREATE TABLE {schema}.{events} (
    global_position  BIGSERIAL PRIMARY KEY,
    event_id         UUID NOT NULL,
    aggregate_type   VARCHAR(255) NOT NULL,
    aggregate_id     VARCHAR(255) NOT NULL,
    version          BIGINT NOT NULL CHECK (version > 0),
    event_type       VARCHAR(255) NOT NULL,
    event_version    INTEGER NOT NULL DEFAULT 1 CHECK (event_version > 0),
    topic            VARCHAR(255),
    event_data       JSONB NOT NULL,
    metadata         JSONB NOT NULL DEFAULT '{}'::jsonb,
    occurred_at      TIMESTAMPTZ NOT NULL,
    recorded_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    correlation_id   UUID,
    causation_id     UUID,
    -- The writing transaction's id (xid8 as bigint): with global_position, the gap-safe
    -- reading order of the log. See docs/concepts.md.
    transaction_id   BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    CONSTRAINT {events}_event_id_key UNIQUE (event_id),
    CONSTRAINT {events}_stream_version_key UNIQUE (aggregate_type, aggregate_id, version)
);

CREATE INDEX {events}_log_idx ON {schema}.{events} (transaction_id, global_position);
CREATE INDEX {events}_category_idx ON {schema}.{events} (aggregate_type, transaction_id, global_position);
CREATE INDEX {events}_type_idx ON {schema}.{events} (event_type);
CREATE INDEX {events}_topic_idx ON {schema}.{events} (topic);
CREATE INDEX {events}_aggregate_id_idx ON {schema}.{events} (aggregate_id);
CREATE INDEX {events}_occurred_idx ON {schema}.{events} (occurred_at);
CREATE INDEX {events}_recorded_idx ON {schema}.{events} (recorded_at);
CREATE INDEX {events}_metadata_idx ON {schema}.{events} USING GIN (metadata jsonb_path_ops);

-- One row per stream: its current version, locked by appends for O(1) version checks.
CREATE TABLE {schema}.{streams} (
    aggregate_type   VARCHAR(255) NOT NULL,
    aggregate_id     VARCHAR(255) NOT NULL,
    version          BIGINT NOT NULL,
    -- The newest transaction that appended to the stream: an append from an older
    -- transaction would sort before it in the log, so it is refused (and retried).
    last_transaction BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE TABLE {schema}.{snapshots} (
    aggregate_type   VARCHAR(255) NOT NULL,
    aggregate_id     VARCHAR(255) NOT NULL,
    version          BIGINT NOT NULL,
    schema_version   INTEGER NOT NULL DEFAULT 1,
    state            JSONB NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE TABLE {schema}.{positions} (
    projection_name             VARCHAR(255) PRIMARY KEY,
    last_processed_position     BIGINT NOT NULL,
    last_processed_at           TIMESTAMPTZ NOT NULL,
    last_processed_transaction  BIGINT NOT NULL DEFAULT 0
);

-- Events are immutable: no UPDATE ever; DELETE and TRUNCATE only by the retention path,
-- which sets factum.allow_delete for its own transaction.
CREATE FUNCTION {schema}.{events}_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'events are immutable: UPDATE on %.% is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF coalesce(current_setting('factum.allow_delete', true), '') <> 'on' THEN
        RAISE EXCEPTION 'events are immutable: % on %.% is only allowed through delete_before', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER {events}_no_update BEFORE UPDATE ON {schema}.{events}
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{events}_guard();
CREATE TRIGGER {events}_no_delete BEFORE DELETE ON {schema}.{events}
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{events}_guard();
CREATE TRIGGER {events}_no_truncate BEFORE TRUNCATE ON {schema}.{events}
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{events}_guard();

-- Appends a batch to one stream in one statement (one round trip).
-- p_expected: -1 any, -2 stream exists, 0 no stream, n > 0 exactly n.
-- Returns one row per event written; on a version conflict, a single row with
-- out_conflict = true and out_version = the stream's actual version.
CREATE FUNCTION {schema}.{events}_append(
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
    n      BIGINT := cardinality(p_event_ids);
    v_xid  BIGINT;
    v_from BIGINT;
    v_last BIGINT;
BEGIN
    -- Serialize appends to one stream *before* this transaction takes an id: an advisory
    -- lock needs none, so a transaction that starts here gets an id newer than that of
    -- the stream's previous writer, and the log's (transaction, position) order keeps the
    -- stream's versions in order. Different streams do not wait on each other (but for
    -- the rare hash collision).
    PERFORM pg_advisory_xact_lock(hashtextextended(p_aggregate_type || chr(31) || p_aggregate_id, 0));
    v_xid := pg_current_xact_id()::text::bigint;
    IF p_expected = -1 THEN
        INSERT INTO {schema}.{streams} AS s (aggregate_type, aggregate_id, version, last_transaction)
            VALUES (p_aggregate_type, p_aggregate_id, n, v_xid)
            ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                SET version = s.version + n, last_transaction = greatest(s.last_transaction, v_xid)
            RETURNING s.version - n, s.last_transaction INTO v_from, v_last;
    ELSIF p_expected = 0 THEN
        INSERT INTO {schema}.{streams} AS s (aggregate_type, aggregate_id, version, last_transaction)
            VALUES (p_aggregate_type, p_aggregate_id, n, v_xid)
            ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                SET version = EXCLUDED.version, last_transaction = greatest(s.last_transaction, v_xid)
                WHERE s.version = 0
            RETURNING 0, s.last_transaction INTO v_from, v_last;
    ELSIF p_expected = -2 THEN
        UPDATE {schema}.{streams} SET version = version + n, last_transaction = greatest(last_transaction, v_xid)
            WHERE aggregate_type = p_aggregate_type AND aggregate_id = p_aggregate_id AND version > 0
            RETURNING version - n, last_transaction INTO v_from, v_last;
    ELSE
        UPDATE {schema}.{streams} SET version = version + n, last_transaction = greatest(last_transaction, v_xid)
            WHERE aggregate_type = p_aggregate_type AND aggregate_id = p_aggregate_id AND version = p_expected
            RETURNING version - n, last_transaction INTO v_from, v_last;
    END IF;

    -- The log is read in (transaction, position) order. If a newer transaction already
    -- appended to this stream, our events would sort before its earlier versions: refuse,
    -- and let the caller retry in a new (newer) transaction.
    IF v_from IS NOT NULL AND v_last <> v_xid THEN
        RAISE EXCEPTION 'append to %/% from transaction % would sort before transaction % in the log; retry in a new transaction',
                p_aggregate_type, p_aggregate_id, v_xid, v_last
            USING ERRCODE = 'serialization_failure', CONSTRAINT = '{streams}_transaction_order';
    END IF;

    IF v_from IS NULL THEN
        RETURN QUERY SELECT coalesce((SELECT s.version FROM {schema}.{streams} s
                WHERE s.aggregate_type = p_aggregate_type AND s.aggregate_id = p_aggregate_id), 0),
            NULL::BIGINT, NULL::BIGINT, true;
        RETURN;
    END IF;

    RETURN QUERY
    INSERT INTO {schema}.{events} AS e (event_id, aggregate_type, aggregate_id, version, event_type,
            event_version, topic, event_data, metadata, occurred_at, correlation_id, causation_id)
        SELECT b.event_id, p_aggregate_type, p_aggregate_id, v_from + b.ord, b.event_type,
            b.event_version, b.topic, b.data, b.metadata, b.occurred_at, b.correlation_id, b.causation_id
        FROM unnest(p_event_ids, p_event_types, p_event_versions, p_topics, p_data, p_metadata,
                p_occurred_at, p_correlation_ids, p_causation_ids)
            WITH ORDINALITY AS b(event_id, event_type, event_version, topic, data, metadata,
                occurred_at, correlation_id, causation_id, ord)
        ORDER BY b.ord
        RETURNING e.version, e.global_position, e.transaction_id, false;

    -- The payload names the category, so the listener wakes only the readers that need it.
    IF p_channel IS NOT NULL THEN
        PERFORM pg_notify(p_channel, p_aggregate_type);
    END IF;
END
$fn$;
