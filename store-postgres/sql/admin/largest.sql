-- Largest aggregates.
SELECT aggregate_type, aggregate_id, count(*) AS event_count FROM {schema}.{events}
GROUP BY aggregate_type, aggregate_id ORDER BY event_count DESC, aggregate_type, aggregate_id LIMIT 10
