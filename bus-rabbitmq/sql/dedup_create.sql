-- The subscriber's deduplication table: one row per (consumer, event id) handled.
CREATE TABLE IF NOT EXISTS {table} (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
)
