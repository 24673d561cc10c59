-- Least-privilege roles for a factum event store, run once per database by a role that
-- may create roles (a superuser, or a managed service's admin role with CREATEROLE).
-- Running it again changes nothing. {owner}, {runtime}, {schema} and {database} are
-- filled in with validated identifiers.
--
-- {owner} runs the migrations and owns every object of the store; {runtime} is the role
-- the service connects as: it owns nothing, and gets its privileges from the owner
-- (grant_runtime.sql, run as {owner} after the migrations).
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{owner}') THEN
        CREATE ROLE {owner} LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{runtime}') THEN
        CREATE ROLE {runtime} LOGIN NOINHERIT;
    END IF;
END
$roles$;
GRANT CONNECT ON DATABASE {database} TO {owner}, {runtime};
-- The owner creates the store's schema, or, if it exists already (public), its objects in it.
-- It may pass CREATE on to the runtime role, for read models kept in a schema per
-- projection build (ExactlyOnce::schema_per_build), which the service creates itself.
GRANT CREATE ON DATABASE {database} TO {owner} WITH GRANT OPTION;
DO $schema$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{schema}') THEN
        EXECUTE 'GRANT USAGE, CREATE ON SCHEMA {schema} TO {owner}';
        EXECUTE 'GRANT USAGE ON SCHEMA {schema} TO {runtime}';
    ELSE
        EXECUTE 'CREATE SCHEMA {schema} AUTHORIZATION {owner}';
    END IF;
END
$schema$;
