-- Claims an event for a consumer in the handler's transaction; no row back means it was
-- handled before. The claim commits with the handler's writes, or not at all.
INSERT INTO {table} (consumer, event_id) VALUES ($1, $2)
ON CONFLICT (consumer, event_id) DO NOTHING
RETURNING 1
