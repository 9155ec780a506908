"""Workers (issue 24): `bluegreen worker --site NAME` runs a site's share of campaigns that
`campaign run --workers` handed to the shared PostgreSQL store's work queue."""
