"""The worker's web port: the server owners' report page, its JSON API and read-only SQL."""
