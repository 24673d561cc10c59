-- A projection's pending request, if any.
SELECT request, request_transaction, request_position, request_clear, requested_at
FROM {schema}.{positions}
WHERE projection_name = $1 AND request IS NOT NULL
