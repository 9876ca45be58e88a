"""The exchange hub: centres, slides catalogue and ingest records (users, grants, audit to come)."""
