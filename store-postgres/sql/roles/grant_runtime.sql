-- What the runtime role {runtime} needs, and nothing more; run as the owner after the
-- migrations (PostgresStore::grant_runtime does). Running it again changes nothing.
-- The schema: granted here when the owner owns it (create_roles.sql grants it otherwise,
-- as for public).
DO $usage$
BEGIN
    IF pg_has_role((SELECT nspowner FROM pg_namespace WHERE nspname = '{schema}'), 'USAGE') THEN
        EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO {runtime}';
    END IF;
END
$usage$;
-- The log: appended to and read, never changed. No UPDATE, DELETE or TRUNCATE, and only
-- the owner may alter the table or its triggers; events leave only through the retention
-- function, which runs with the owner's rights.
GRANT SELECT, INSERT ON {schema}.{events} TO {runtime};
GRANT USAGE ON SEQUENCE {schema}.{events}_global_position_seq TO {runtime};
-- Heads deleted under schema version 2, and which migrations are applied: read only.
GRANT SELECT ON {schema}.{streams}, {schema}.{migrations} TO {runtime};
-- Snapshots, checkpoints and recorded failures are the runtime's to keep.
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.{snapshots}, {schema}.{positions}, {schema}.{failures} TO {runtime};
-- The registry of projection builds (schema version 10): registered, switched and
-- retired at run time. The schemas of read models kept apart per build are created by
-- the runtime role, which needs CREATE on the database for them (see docs/operations.md).
GRANT SELECT, INSERT, UPDATE ON {schema}.{positions}_builds TO {runtime};
-- The instances that run a projection's slices (schema version 12).
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.{positions}_members TO {runtime};
-- Process managers' durable timers (schema version 13).
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.{positions}_timers TO {runtime};
-- The append functions, the batch fence and retention (and what it would delete).
GRANT EXECUTE ON FUNCTION
    {schema}.{events}_append(TEXT, TEXT, BIGINT, UUID[], TEXT[], INTEGER[], TEXT[], JSONB[], JSONB[], TIMESTAMPTZ[], UUID[], UUID[], TEXT),
    {schema}.{events}_append_in(TEXT, TEXT, BIGINT, UUID[], TEXT[], INTEGER[], TEXT[], JSONB[], JSONB[], TIMESTAMPTZ[], UUID[], UUID[], TEXT),
    {schema}.{positions}_fence(TEXT, BIGINT, BIGINT),
    {schema}.{events}_retain(TIMESTAMPTZ, BOOLEAN, TEXT[], BOOLEAN, INTEGER),
    {schema}.{events}_retainable(TIMESTAMPTZ, BOOLEAN, TEXT[], BOOLEAN)
    TO {runtime};
-- A stream's head and events through the stream index (schema version 9).
GRANT EXECUTE ON FUNCTION
    {schema}.{events}_head(TEXT, TEXT, BOOLEAN),
    {schema}.{events}_stream(TEXT, TEXT, BIGINT, BIGINT),
    {schema}.{events}_payloads(TEXT, TEXT, BIGINT, INTEGER),
    {schema}.{snapshots}_load(TEXT, TEXT),
    {schema}.{snapshots}_delete(TEXT, TEXT),
    {schema}.{events}_at(TEXT[], TEXT[], BIGINT[], BOOLEAN),
    {schema}.{events}_held(UUID[]),
    {schema}.{events}_by_ids(UUID[], TEXT, TEXT)
    TO {runtime};
-- What query filters enumerate along the indexes (schema version 7).
GRANT EXECUTE ON FUNCTION {schema}.{events}_aggregate_types(), {schema}.{events}_topic_pairs() TO {runtime};
