"""The WSGI entry point: `gunicorn --preload fleet_checkin.wsgi:application`.

With --preload the app is built once in the gunicorn master, so the startup
delay counts from the service start rather than from each worker (re)start,
and a bad config stops the service at start with one clear line.
"""

from __future__ import annotations

import logging
import sys

from .app import create_app
from .config import ConfigError, load_config
from .store import ShardStore


def build_application():
    """The app for the config named by FLEET_CHECKIN_CONFIG (default /etc/fleet-checkin/config.json)."""
    config = load_config()
    return create_app(config, ShardStore(config))


logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
try:
    application = build_application()
except ConfigError as exc:
    print(f"fleet-checkin: invalid config: {exc}", file=sys.stderr)
    raise SystemExit(1) from None
