-- factum event store schema, version 11: the W3C trace context stays out of the metadata
-- index.
--
-- Events now carry the `traceparent` and `tracestate` of the span that recorded them in
-- their metadata (with factum's `opentelemetry` feature). Like the correlation and
-- causation ids, these are not what the partial GIN on the metadata is for: the index is
-- rebuilt on the metadata without them, so that a traced event whose metadata holds
-- nothing else is not indexed at all. On a large table this takes as long as building
-- the index does, and appends wait for it: plan it like any index build.
DROP INDEX IF EXISTS {schema}.{events}_metadata_idx;
{metadata_index}
