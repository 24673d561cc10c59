-- Returns once everything committed before it is on the synchronous standbys, in
-- autocommit: a transaction that writes WAL (here a transactional logical message of
-- prefix `factum.durable`, which needs no privilege and touches no table) writes a commit
-- record, and its commit waits for the standbys that synchronous_standby_names names (at
-- least at synchronous_commit = on, which it sets for itself should the session run with
-- less). A transaction id alone writes no WAL, and its commit waits for nothing. The
-- commit of an autocommit statement runs after its statement timeout is disabled, so a
-- role's statement_timeout cannot cut the wait short.
-- WAL reaches a standby in order, so every commit a reader saw before this one is there
-- too. On a server with no standby attached and none required it takes no id and returns
-- at once: false. (The standbys attached are read from shared memory, not from this
-- session's settings, which take a configuration reload only after its next statement.)
--
-- It also counts how many of the events read ($1, their ids) this server holds: a page
-- read from the old primary just before a failover may hold events the promoted standby
-- never received, and the barrier on the new primary says nothing about them. The count
-- goes through the event-id index whatever the statistics ({events}_held).
SELECT CASE
    WHEN current_setting('synchronous_standby_names') = ''
         AND NOT EXISTS (SELECT FROM pg_stat_replication) THEN false
    ELSE set_config('synchronous_commit',
                    CASE WHEN current_setting('synchronous_commit') IN ('off', 'local')
                         THEN 'on' ELSE current_setting('synchronous_commit') END,
                    true) IS NOT NULL
         AND pg_logical_emit_message(true, 'factum.durable', '') IS NOT NULL
END AS waited,
{schema}.{events}_held($1::uuid[]) AS found
