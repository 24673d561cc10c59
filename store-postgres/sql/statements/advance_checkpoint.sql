-- Moves a consumer's checkpoint ($1) from ($3 transaction, $2 position) to ($5, $4), only
-- if it is still there; a missing row counts as the start. Answers how many rows moved
-- (0: the writer is not where it believes it is: it lost its lease). Clears a record of
-- its having stopped (record_stop.sql). A build that was replaced or retired does not
-- move, nor does a slice of one (schema versions 10 and 12).
WITH moved AS (
    UPDATE {schema}.{positions}
    SET last_processed_position = $4, last_processed_transaction = $5, last_processed_at = now(),
        stopped = NULL
    WHERE projection_name = $1 AND last_processed_position = $2 AND last_processed_transaction = $3
      AND NOT EXISTS (SELECT 1 FROM {schema}.{positions}_builds b
                      WHERE b.consumer_name IN ($1, regexp_replace($1, '#[0-9]+/[0-9]+$', ''))
                        AND b.state IN ('replaced', 'retired'))
    RETURNING 1
), created AS (
    INSERT INTO {schema}.{positions}
        (projection_name, last_processed_position, last_processed_transaction, last_processed_at)
    SELECT $1, $4, $5, now()
    WHERE $2 = 0 AND $3 = 0
      AND NOT EXISTS (SELECT 1 FROM {schema}.{positions} WHERE projection_name = $1)
      AND NOT EXISTS (SELECT 1 FROM {schema}.{positions}_builds b
                      WHERE b.consumer_name IN ($1, regexp_replace($1, '#[0-9]+/[0-9]+$', ''))
                        AND b.state IN ('replaced', 'retired'))
    ON CONFLICT (projection_name) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM created)
