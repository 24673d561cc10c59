-- factum event store schema, version 10: the registry of projection builds (blue/green
-- versions and rebuilds into a fresh copy).
--
-- Each version a projection's code declares, and each rebuild of a version, is a build
-- with its own consumer name (its checkpoint, lease and fence), and, for read models
-- kept apart per build, a schema of its own (`location`). At most one build of a
-- projection is live: the one readers read. The cut-over from one live build to
-- another is one transaction (see `cut_over` in the store), so a reader that reads the
-- registry and the read model in one snapshot never sees a half-built one.
CREATE TABLE {schema}.{positions}_builds (
    projection_name VARCHAR(255) NOT NULL,
    version         INTEGER NOT NULL CHECK (version > 0),
    build           INTEGER NOT NULL CHECK (build > 0),
    consumer_name   VARCHAR(255) NOT NULL UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('building', 'live', 'replaced', 'retired')),
    location        TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    live_at         TIMESTAMPTZ,
    retired_at      TIMESTAMPTZ,
    PRIMARY KEY (projection_name, version, build)
);

CREATE UNIQUE INDEX {positions}_builds_one_live ON {schema}.{positions}_builds (projection_name)
    WHERE state = 'live';

-- An operator's request may also ask the live build's holder to switch to another build
-- ('switch': request_transaction holds the build's version, request_position its number).
ALTER TABLE {schema}.{positions} DROP CONSTRAINT {positions}_request_check;
ALTER TABLE {schema}.{positions}
    ADD CONSTRAINT {positions}_request_check CHECK (request IN ('reset', 'retry', 'switch'));

-- A build that was replaced or retired takes no more batches: its fence refuses them, as
-- it refuses a writer whose checkpoint moved. The cut-over enters the live build's fence,
-- so once it has committed, the old build's holder finds out at its next batch and goes
-- on with the build to run now (or stands down).
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
    IF EXISTS (SELECT 1 FROM {schema}.{positions}_builds b
               WHERE b.consumer_name = p_projection AND b.state IN ('replaced', 'retired')) THEN
        RETURN false;
    END IF;
    SELECT p.last_processed_position, p.last_processed_transaction INTO v_position, v_transaction
        FROM {schema}.{positions} p WHERE p.projection_name = p_projection;
    IF NOT FOUND THEN
        RETURN p_position = 0 AND p_transaction = 0;
    END IF;
    RETURN v_position = p_position AND v_transaction = p_transaction;
END
$fn$;
