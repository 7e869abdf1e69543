"""The service's refusals, each a one-line :class:`~core.errors.ServiceError` with the HTTP
status it answers with (the app maps the other ``PodforgeError`` s by kind)."""

from __future__ import annotations

from core.errors import ServiceError


class Unauthorized(ServiceError):
    """No bearer token, or not the service's."""

    status = 401


class NotFound(ServiceError):
    """No such job, episode or file."""

    status = 404


class BadRequest(ServiceError):
    """A request the service refuses as given (a script outside the workspace, ...)."""

    status = 400


class TooLarge(ServiceError):
    """A request body over the limit."""

    status = 413


class Busy(ServiceError):
    """The synthesis queue or the job list is full; try again after ``retry_after`` s."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Closing(ServiceError):
    """The service is shutting down."""

    status = 503


class Unprocessable(ServiceError):
    """A well-formed request the service cannot do as asked (text too long, empty)."""

    status = 422
