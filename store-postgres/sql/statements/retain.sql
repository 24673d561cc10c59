-- One chunk of retention, through the owner's definer function.
SELECT {schema}.{events}_retain($1, $2, $3, $4, $5)
