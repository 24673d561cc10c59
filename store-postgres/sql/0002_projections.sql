-- factum event store schema, version 2: what projections record beside their checkpoints.

-- Events a projection gave up on and skipped (failure policy "skip and record"), kept
-- until an operator replays them; one row per projection and event.
CREATE TABLE {schema}.{failures} (
    projection_name  VARCHAR(255) NOT NULL,
    event_id         UUID NOT NULL,
    aggregate_type   VARCHAR(255) NOT NULL,
    aggregate_id     VARCHAR(255) NOT NULL,
    version          BIGINT NOT NULL,
    global_position  BIGINT NOT NULL,
    transaction_id   BIGINT NOT NULL,
    event_type       VARCHAR(255) NOT NULL,
    error            TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    failed_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (projection_name, event_id)
);

CREATE INDEX {failures}_log_idx ON {schema}.{failures} (projection_name, transaction_id, global_position);
