"""Persistence: the PostGIS database (embedded or external), its schema and bulk loads."""
