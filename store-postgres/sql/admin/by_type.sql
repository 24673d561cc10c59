-- Event count by aggregate type.
SELECT aggregate_type, count(*) FROM {schema}.{events}
GROUP BY aggregate_type ORDER BY count(*) DESC, aggregate_type LIMIT 20
