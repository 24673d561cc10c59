-- Moves a build to another state, stamping when it became live or was retired.
UPDATE {schema}.{positions}_builds
   SET state = $4,
       live_at = CASE WHEN $4 = 'live' THEN now() ELSE live_at END,
       retired_at = CASE WHEN $4 = 'retired' THEN now() ELSE retired_at END
 WHERE projection_name = $1 AND version = $2 AND build = $3
