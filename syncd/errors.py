"""syncd's own exceptions, and the process exit codes they map to.

Foreign exceptions (stomp.py, SQLAlchemy, drivers) are translated into these at the one module
that talks to the foreign library (``raise ... from``); everything above decides by class.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``syncd`` command; the README documents them for sysadmins."""

    OK = 0
    FAILURE = 1  # unexpected failure; systemd restarts the daemon (Restart=on-failure)
    BAD_CONFIG = 2  # bad command line, config.yaml or mapping: a restart cannot help
    UNAVAILABLE = 3  # broker or database unreachable when the command needed it
    PARTIAL = 4  # `syncd publish`: some input was rejected or not confirmed by the broker
    DIFFERENT = 5  # `syncd verify`: a target still differs from its source


class SyncdError(Exception):
    """Base class of every error syncd raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One mistake in a file a human edits, with where it is and what to write instead."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


class ConfigError(SyncdError):
    """config.yaml or a mapping file is wrong; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class DecodeError(SyncdError):
    """A message body or an event in it is not a change event this contract accepts."""


class NoMappingError(SyncdError):
    """A well-formed event that no mapping consumes."""


class MappingApplyError(SyncdError):
    """A mapping could not turn an event into a target row (missing key, unknown column, ...)."""


class BrokerUnavailable(SyncdError):
    """The broker cannot be reached, or the connection to it dropped."""


class BrokerRefused(BrokerUnavailable):
    """The broker answered and said no (a right the user lacks), or TLS trust failed.

    Trying again does not help until someone changes a password, a certificate or the broker's
    rights: a command stops at once (exit 3), the daemon keeps trying at its longest backoff.
    """


class BrokerLoginRefused(BrokerRefused):
    """The broker refused the login: wrong user or password, or anonymous logins are off."""


class BrokerTLSError(BrokerRefused):
    """The TLS handshake failed: syncd did not trust the broker's certificate (issuer, host
    name, expiry), or the broker did not accept syncd's client certificate."""


class PublishError(SyncdError):
    """Some events were not confirmed by the broker; ``confirmed`` were."""

    def __init__(self, message: str, confirmed: int):
        self.confirmed = confirmed
        super().__init__(message)


class TargetUnavailable(SyncdError):
    """A transient target failure: connection lost, deadlock, serialization, lock timeout.

    The same work may succeed if tried again later.
    """


class TargetOutage(TargetUnavailable):
    """The target database cannot be reached at all: no event is to blame, so wait for it."""


class PermanentApplyError(SyncdError):
    """The target rejected the change for good (constraint, type, unknown column, ...)."""


class SourceUnavailable(SyncdError):
    """The source database cannot be reached, or its capture connection dropped."""


class CaptureError(SyncdError):
    """The source is not prepared for capture, or refuses it (no slot, no outbox, no rights).

    The message says what to run or change (``syncd capture install``, ``wal_level``…).
    """


class VerifyError(SyncdError):
    """``syncd verify`` could not compare a mapping (a query failed); the message says which."""


def first_line(error: BaseException | None) -> str:
    """The first line of an error's text (drivers add hints, SQL and context below it), or its
    class name when it has no text: what messages and dead letters quote of a foreign error."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
