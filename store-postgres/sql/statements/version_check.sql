coalesce((SELECT h.version FROM {schema}.{events} h
    WHERE h.aggregate_type = $1 AND h.aggregate_id = $2 ORDER BY h.version DESC LIMIT 1), 0) = $3