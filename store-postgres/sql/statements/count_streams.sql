-- How many streams hold at least one stored event, in one category ($1) or in all
-- ($1 NULL): distinct keys of the stream index, read in its order.
SELECT count(*) FROM (
    SELECT DISTINCT aggregate_type, aggregate_id
    FROM {schema}.{events}
    WHERE $1::text IS NULL OR aggregate_type = $1::text
) AS streams
