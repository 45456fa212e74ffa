"""Domain errors: one base class, each subclass maps to one kind of refusal.

The HTTP layer and the CLI translate these into status codes and exit codes, so the class
says *why* a command was refused, and the message says what the person can do about it.
"""


class RelctlError(Exception):
    """Base of every error relctl raises on purpose."""

    code = "error"


class ValidationError(RelctlError):
    """The command's input breaks a rule; nothing was recorded."""

    code = "validation_error"


class ConflictError(RelctlError):
    """The command conflicts with the current state (a transition, a concurrent write)."""

    code = "conflict"


class NotFoundError(RelctlError):
    """The aggregate or version the command names does not exist."""

    code = "not_found"


class UnauthorizedError(RelctlError):
    """No valid credentials were presented."""

    code = "unauthorized"


class ForbiddenError(RelctlError):
    """The actor is authenticated but its role does not allow this command."""

    code = "forbidden"


class UnavailableError(RelctlError):
    """A dependency (database, broker) cannot be reached right now; retry later."""

    code = "unavailable"
