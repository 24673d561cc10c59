-- The highest position assigned to a stored event.
SELECT max(global_position) FROM {schema}.{events}
