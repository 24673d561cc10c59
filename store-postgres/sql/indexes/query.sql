-- The query indexes of schema version 7: every filter of EventStore::query, count and
-- stream uses one of these or one of the log's own indexes (see docs/event-store.md).
-- Migration 7 creates them unless the schema configuration switches them off
-- (SchemaNames::query_indexes(false)); scripts/index-cost.sh measures what each costs.
--
-- Event types, and topics through the (event type, topic) pairs the store enumerates
-- along this index ({events}_topic_pairs): one B-tree where two served before.
CREATE INDEX {events}_type_topic_idx ON {schema}.{events} (event_type, topic);
-- Time ranges: the log is append-only, so the times follow the heap's order and a BRIN
-- summary per 32 pages finds a range at almost no cost per append.
CREATE INDEX {events}_occurred_brin ON {schema}.{events} USING BRIN (occurred_at) WITH (pages_per_range = 32);
-- Retention's cutoff.
CREATE INDEX {events}_recorded_brin ON {schema}.{events} USING BRIN (recorded_at) WITH (pages_per_range = 32);
-- Metadata containment on the tracing ids: their own columns, bloom-summarized.
CREATE INDEX {events}_tracing_brin ON {schema}.{events}
    USING BRIN (correlation_id uuid_bloom_ops (n_distinct_per_range = 512),
                causation_id uuid_bloom_ops (n_distinct_per_range = 512)) WITH (pages_per_range = 32);
{metadata_index}
