"""The one error tree of the server.

    ConversationsError            base; its message is shown to the client as is
    ├── NotFoundError             an id that does not exist ("conversation conv-… not found")
    ├── ValidationError           bad input; names the field and how to fix it
    ├── ConflictError             the request clashes with current state
    │   ├── VersionConflictError  a memory block write expected another version than the current one
    │   └── DuplicateRunError     an idempotency key already names a run (stored by another process)
    ├── StorageUnavailableError   the database cannot store or read now (disk full, I/O error, busy)
    └── ModelError                a model call could not be made or failed
        ├── ModelNotConfiguredError   no level names a model, or a provider key is missing
        └── ProviderError             the provider answered with an error (litellm's class kept)
            └── ContextWindowError    the prompt was over the model's window

litellm's exceptions are mapped to these once, in the model gateway, and SQLite's resource
failures once, where the store's connections hand results back (storage/base.py); the MCP and
REST layers translate this tree to their own error shapes in one place each.
"""

from __future__ import annotations


class ConversationsError(Exception):
    """Base class: the message is safe and meant for the user."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(ConversationsError, KeyError):
    """An id that names nothing."""

    status_code = 404

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident} not found")
        self.kind = kind
        self.ident = ident

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class ValidationError(ConversationsError, ValueError):
    """Bad input: the message names the field."""

    status_code = 422

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid {field}: {problem}")
        self.field = field


class ConflictError(ConversationsError):
    """The request clashes with the current state."""

    status_code = 409


class VersionConflictError(ConflictError):
    """A write that expected another version of a memory block than the current one."""

    def __init__(self, label: str, current: int, expected: int) -> None:
        super().__init__(
            f"memory block {label!r} is at version {current}, not {expected}: it changed since it was read; "
            f"read it again (current version {current}) and retry"
        )
        self.current_version = current


class DuplicateRunError(ConflictError):
    """The idempotency key of a new run already names `run_id`: the send repeats that run."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"this idempotency key already names run {run_id}")
        self.run_id = run_id


class StorageUnavailableError(ConversationsError):
    """The server's own storage failed (disk full, I/O error, busy timeout, read-only or unopenable
    file): not the client's fault, and a later retry may succeed."""

    status_code = 503
    retry_after = 5  # seconds a client is told to wait before retrying

    def __init__(self, detail: str) -> None:
        super().__init__(f"the server could not store the data ({detail}); retry later")
        self.detail = detail


class ModelError(ConversationsError):
    """A model call could not be made or failed."""

    status_code = 502


class ModelNotConfiguredError(ModelError):
    """No model is set at any level, or the provider's key is missing."""

    status_code = 400


class ProviderError(ModelError):
    """The provider answered with an error; `error_class` is litellm's class name."""

    def __init__(self, error_class: str, message: str, status_code: int | None = None) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.provider_message = message
        if status_code:
            self.status_code = status_code


class ContextWindowError(ProviderError):
    """The prompt did not fit the model's context window."""
