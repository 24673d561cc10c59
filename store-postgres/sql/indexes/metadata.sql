-- Metadata containment on any other key (user, tenant, custom keys): only the events
-- whose metadata holds more than the tracing ids and the W3C trace context are indexed.
-- (Each trace context is unique: indexing it would cost every traced append a GIN entry
-- that no filter of the store needs.) Since schema version 11.
CREATE INDEX {events}_metadata_idx ON {schema}.{events}
    USING GIN ((metadata - 'correlation_id' - 'causation_id' - 'traceparent' - 'tracestate') jsonb_path_ops)
    WHERE (metadata - 'correlation_id' - 'causation_id' - 'traceparent' - 'tracestate') <> '{}'::jsonb;
