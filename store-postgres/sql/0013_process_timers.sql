-- factum event store schema, version 13: durable timers.
--
-- A process manager's instance sets named timers; each fires once, after its deadline,
-- through whichever instance holds the process's timer lease. One row per stream and
-- name: setting a name again replaces the row and its id; a fired timer is removed by
-- its id, so that a later timer of the same name survives. `version` is the stream's
-- version that set the row: a write from an older version never replaces or deletes it.
CREATE TABLE {schema}.{positions}_timers (
    aggregate_type VARCHAR(255) NOT NULL,
    aggregate_id   VARCHAR(255) NOT NULL,
    name           TEXT NOT NULL,
    timer_id       UUID NOT NULL,
    deadline       TIMESTAMPTZ NOT NULL,
    version        BIGINT NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, name)
);

-- The due timers of a process, earliest first.
CREATE INDEX {positions}_timers_due ON {schema}.{positions}_timers (aggregate_type, deadline);
