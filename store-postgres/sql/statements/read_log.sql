-- A page of the log as a reader following a selector sees it (EventLog::read_log).
-- The page: at most $3 events after the checkpoint ($1 transaction, $2 position), in
-- (transaction, position) order and below the gap-safe horizon, of the aggregate type $4
-- when it is not null (one category: its index). Of the page, only the events that match
-- the selector come back: aggregate types $5, event types $6, topic regexes $7 (each
-- empty: any), and when $8 is not null only the streams of slice $9 of $8 (see
-- factum::store::Slice for the hash). Every row also carries the page's last checkpoint and size, and a page
-- with no match comes back as one row of NULL events with them, so that the reader moves
-- past what it skipped.
WITH page AS MATERIALIZED (
    SELECT {columns} FROM {schema}.{events}
    WHERE (transaction_id, global_position) > ($1, $2)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
      AND ($4::text IS NULL OR aggregate_type = $4)
    ORDER BY transaction_id, global_position
    LIMIT $3
), last AS (
    SELECT transaction_id, global_position, (SELECT count(*) FROM page) AS n
    FROM page ORDER BY transaction_id DESC, global_position DESC LIMIT 1
)
SELECT s.*, last.transaction_id AS last_transaction, last.global_position AS last_position, last.n
FROM last LEFT JOIN LATERAL (
    SELECT * FROM page
    WHERE (cardinality($5::text[]) = 0 OR aggregate_type = ANY($5))
      AND (cardinality($6::text[]) = 0 OR event_type = ANY($6))
      AND (cardinality($7::text[]) = 0 OR ('.' || topic) ~ ANY($7))
      AND ($8::int IS NULL
           OR ('x' || substr(md5(aggregate_type || '/' || aggregate_id), 1, 8))::bit(32)::bigint % $8 = $9::int)
) AS s ON true
ORDER BY s.transaction_id, s.global_position
