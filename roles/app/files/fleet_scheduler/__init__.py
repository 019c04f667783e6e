"""fleet-scheduler: the singleton "database agent" of the fleetscale split.

Every app node runs it; only the holder of a MariaDB named lock on the
coordination shard does the periodic work on every shard (mark silent agents
offline, roll up tenant counters, purge old check-ins). The others stand by
and take over within seconds of the holder's database session ending.
"""

__version__ = "1.0.0"
