"""Connections to the shard databases.

The driver (MySQLdb, Debian's python3-mysqldb) is passed in rather than
imported at module level, so the package imports, and its tests run, on a
machine without it.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from .config import Config, ShardConfig

# MySQLdb.constants.CLIENT.FOUND_ROWS: UPDATE reports the rows it matched, not
# only the rows whose values changed, so "0 rows" reliably means "no such row".
CLIENT_FOUND_ROWS = 2

# Shard sessions compare times with the check-in service's: UTC everywhere. A
# short lock wait: when a check-in holds a row, the scheduler retries next round
# instead of queueing behind it.
INIT_COMMAND = "SET time_zone = '+00:00', innodb_lock_wait_timeout = 5"
# READ COMMITTED (with the servers' ROW binary log) lets INSERT ... SELECT read
# agents without locking them against concurrent check-ins.
SET_ISOLATION = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
SET_WAIT_TIMEOUT = "SET SESSION wait_timeout = %s"


def load_driver() -> Any:
    """The MySQLdb module, imported only when the service really connects."""
    return importlib.import_module("MySQLdb")


def connect(driver: Any, config: Config, shard: ShardConfig, *, read_timeout: int = 0, wait_timeout: int = 0) -> Any:
    """Open a session on `shard` (autocommit off: commit after each unit of work).

    `wait_timeout` (seconds) makes the server end the session once it has
    been silent that long, e.g. because this node lost its network.
    """
    connection = driver.connect(
        host=shard.address,
        port=shard.port,
        user=shard.user,
        passwd=shard.password,
        db=shard.schema,
        connect_timeout=config.connect_timeout,
        read_timeout=read_timeout or config.read_timeout,
        write_timeout=config.read_timeout,
        charset="utf8mb4",
        autocommit=False,
        client_flag=CLIENT_FOUND_ROWS,
        init_command=INIT_COMMAND,
    )
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(SET_ISOLATION)
            if wait_timeout:
                cursor.execute(SET_WAIT_TIMEOUT, (wait_timeout,))
        finally:
            cursor.close()
    except BaseException:
        close_quietly(connection)
        raise
    return connection


def close_quietly(connection: Any) -> None:
    """Close a connection that may already be broken."""
    if connection is None:
        return
    # A broken connection may fail to close; there is nothing more to undo.
    with contextlib.suppress(Exception):
        connection.close()


def describe(exc: BaseException) -> str:
    """A driver error as "(code) message", the form MySQL clients print."""
    if len(exc.args) >= 2:
        return f"({exc.args[0]}) {exc.args[1]}"
    return str(exc) or type(exc).__name__
