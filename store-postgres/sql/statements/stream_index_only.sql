-- Settings for the rest of a transaction under which a stream's read has one plan without
-- a penalty, a scan of the stream index in version order (the same settings the stream
-- lookups of schema version 9 are declared with). read_payloads_rest.sql runs only after
-- these, so every plan PostgreSQL makes for it, and caches, is made under them.
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
SET LOCAL enable_sort = off
