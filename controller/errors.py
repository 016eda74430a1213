"""One exception root, with host context. The CLI turns these into one clear line and exit 1."""

from __future__ import annotations


class TunefleetError(Exception):
    """Base of every error tunefleet reports to its user."""

    def __init__(self, message: str, host: str | None = None):
        super().__init__(message)
        self.message = message
        self.host = host

    def __str__(self) -> str:
        return f"{self.host}: {self.message}" if self.host else self.message


class UserError(TunefleetError):
    """Bad input: a file, an option, a spec. Nothing was changed on any host."""


class SpecError(UserError):
    """A tuning spec that is malformed, unsafe, or does not fit the hosts."""


class InventoryError(UserError):
    """An inventory file that cannot be read or names no usable host."""


class Cancelled(TunefleetError):
    """The run was cancelled (controller/job.py): no evaluation starts after it."""


class HostError(TunefleetError):
    """Something went wrong with one host; the others carry on."""


class Unreachable(HostError):
    transient = False  # True when a retry may get through (a refused or timed-out connect; fleet/sshroute.py)


class AuthFailed(HostError):
    pass


class UnknownHostKey(HostError):
    pass


class NoPython(HostError):
    pass


class SudoPasswordRequired(HostError):
    pass


class AgentError(HostError):
    """The agent answered a request with an error, or stopped answering."""

    def __init__(self, message: str, host: str | None = None, etype: str = "InternalError",
                 details: dict | None = None):
        super().__init__(message, host)
        self.etype = etype
        self.details = details or {}  # the error's other fields (errno, drift, ...)


class AgentTimeout(AgentError):
    def __init__(self, message: str, host: str | None = None):
        super().__init__(message, host, "Timeout")


class AgentGone(AgentError):
    def __init__(self, message: str, host: str | None = None):
        super().__init__(message, host, "Gone")
