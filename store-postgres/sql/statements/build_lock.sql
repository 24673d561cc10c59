-- Serializes the changes to one projection's builds ("buil" in ASCII, apart from the
-- leases' "fact" and the batch fences' "fenc").
SELECT pg_advisory_xact_lock(1651861868, hashtext('{schema}.' || $1))
