"""The errors the command line turns into one clear line and an exit code, never a traceback."""

from __future__ import annotations

# Exit codes shared by every command, so that playbooks can tell "the stack failed the
# check" (1) from "the check was not allowed or not well asked" (2) and "the check could
# not be carried out" (3).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
# A run stopped by SIGINT/SIGTERM: its report is written, but it is not the run that was asked for.
EXIT_INTERRUPTED = 130


class AgentsimError(Exception):
    """A problem the user can fix from the message alone."""

    exit_code = EXIT_FAILED


class UsageError(AgentsimError):
    """A bad option, file or value: the message names the field and the value."""

    exit_code = EXIT_USAGE


class TargetRefused(UsageError):
    """The target is outside loopback and the explicitly allowed lab networks."""


class ReaderUnavailable(AgentsimError):
    """A shard database could not be read, so nothing can be concluded about it."""

    exit_code = EXIT_UNAVAILABLE
