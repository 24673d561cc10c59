-- factum event store schema, version 12: projections in slices.
--
-- A projection may be declared with N slices: each stream belongs to one slice (by a hash
-- of its name, see factum::store::Slice), and each slice of a build has its own consumer
-- name, `<build's consumer name>#<index>/<N>`, so its own checkpoint, lease and fence.
-- The registry records each build's slice count: every build of one version has the
-- same, so that two layouts never mix in one version.
ALTER TABLE {schema}.{positions}_builds
    ADD COLUMN slices INTEGER NOT NULL DEFAULT 1 CHECK (slices BETWEEN 1 AND 1024);

-- The instances that run a build's slices, each seen within the last few seconds: how
-- many there are decides how many slices each one runs, and `holds` says which it holds
-- now (for `factum status`). An instance refreshes its row while it runs and deletes it
-- when it stops; a row not refreshed is stale and ignored.
CREATE TABLE {schema}.{positions}_members (
    consumer_name VARCHAR(255) NOT NULL,
    instance      UUID NOT NULL,
    label         TEXT NOT NULL,
    holds         INTEGER[] NOT NULL DEFAULT '{}',
    seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_name, instance)
);

-- A slice of a replaced or retired build takes no more batches either.
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
               WHERE b.consumer_name IN (p_projection, regexp_replace(p_projection, '#[0-9]+/[0-9]+$', ''))
                 AND b.state IN ('replaced', 'retired')) THEN
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
