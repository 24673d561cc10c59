-- Puts the schemas of the named projections' live builds first on the transaction's
-- search_path, in the order named, and returns those builds' (projection, version, build).
-- Run first in a REPEATABLE READ transaction, so the registry and the read models are
-- read in one snapshot: a cut-over is seen whole or not at all.
WITH live AS (
    SELECT b.projection_name, b.version, b.build, b.location, p.ord
      FROM unnest($1::text[]) WITH ORDINALITY AS p(name, ord)
      JOIN {schema}.{positions}_builds b ON b.projection_name = p.name AND b.state = 'live'
)
SELECT set_config('search_path',
                  concat_ws(', ',
                            (SELECT string_agg(quote_ident(location), ', ' ORDER BY ord) FROM live
                              WHERE location IS NOT NULL),
                            nullif(current_setting('search_path'), '')), true),
       coalesce((SELECT array_agg(projection_name ORDER BY ord) FROM live), '{}'),
       coalesce((SELECT array_agg(version ORDER BY ord) FROM live), '{}'),
       coalesce((SELECT array_agg(build ORDER BY ord) FROM live), '{}')
