-- factum event store schema, version 7: fewer, cheaper query indexes.
--
-- Up to version 6 the events table carried eleven indexes; the six that served only ad hoc
-- queries (B-trees on event_type, topic, aggregate_id, occurred_at and recorded_at, a GIN
-- on the whole metadata) cost about as much WAL per append as the row itself. They are
-- replaced here by indexes that serve the same filters for far less (sql/indexes/query.sql,
-- measured by scripts/index-cost.sh):
-- - event types and topics share one B-tree on (event_type, topic);
-- - an aggregate id alone is found through the stream index (aggregate_type, aggregate_id,
--   version), once per aggregate type, so it needs no index of its own;
-- - time ranges and retention's cutoff use BRIN summaries, as the log is append-only;
-- - metadata containment uses the correlation_id and causation_id columns for the tracing
--   ids, and a partial GIN for the other keys, holding only events that have any.
-- With the query indexes switched off (SchemaNames::query_indexes(false)) only the log's own
-- indexes remain, and a filtered query reads the table.
--
-- On a large table, creating the new indexes takes a while, and appends wait for it.
DROP INDEX IF EXISTS {schema}.{events}_type_idx;
DROP INDEX IF EXISTS {schema}.{events}_topic_idx;
DROP INDEX IF EXISTS {schema}.{events}_aggregate_id_idx;
DROP INDEX IF EXISTS {schema}.{events}_occurred_idx;
DROP INDEX IF EXISTS {schema}.{events}_recorded_idx;
DROP INDEX IF EXISTS {schema}.{events}_metadata_idx;

{query_indexes}

-- The distinct aggregate types, one step along the stream index each (a loose index scan):
-- a filter on an aggregate id alone probes the stream index once per type.
CREATE FUNCTION {schema}.{events}_aggregate_types() RETURNS SETOF TEXT
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_type TEXT;
BEGIN
    SELECT min(e.aggregate_type) INTO v_type FROM {schema}.{events} e;
    WHILE v_type IS NOT NULL LOOP
        RETURN NEXT v_type;
        SELECT min(e.aggregate_type) INTO v_type FROM {schema}.{events} e WHERE e.aggregate_type > v_type;
    END LOOP;
END
$fn$;

-- The distinct (event type, topic) pairs with a topic, one step along the (event_type,
-- topic) index each: a topic filter resolves its patterns against them, then probes the
-- index for the pairs that match.
CREATE FUNCTION {schema}.{events}_topic_pairs() RETURNS TABLE (event_type TEXT, topic TEXT)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_type  TEXT;
    v_topic TEXT;
BEGIN
    SELECT min(e.event_type) INTO v_type FROM {schema}.{events} e;
    WHILE v_type IS NOT NULL LOOP
        SELECT min(e.topic) INTO v_topic FROM {schema}.{events} e WHERE e.event_type = v_type;
        WHILE v_topic IS NOT NULL LOOP
            event_type := v_type;
            topic := v_topic;
            RETURN NEXT;
            SELECT min(e.topic) INTO v_topic FROM {schema}.{events} e
                WHERE e.event_type = v_type AND e.topic > v_topic;
        END LOOP;
        SELECT min(e.event_type) INTO v_type FROM {schema}.{events} e WHERE e.event_type > v_type;
    END LOOP;
END
$fn$;
