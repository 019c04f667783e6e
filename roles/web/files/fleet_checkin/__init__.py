"""Reference agent check-in service of fleetscale.split.

Modules:
    config      loads and validates the JSON config (tenant -> shard routing).
    validation  checks request bodies and query strings.
    store       the SQL against the tenant shards (MySQLdb).
    app         the falcon resources and their wiring.
    wsgi        the entry point gunicorn loads.
"""
