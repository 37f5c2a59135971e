"""Domain errors raised by services. The API turns them into 4xx answers in one place."""


class ServiceError(Exception):
    """A request that cannot be carried out as asked; the message is shown to the user."""

    status_code = 400

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ConflictError(ServiceError):
    """The object is not in a state that allows this (409)."""

    status_code = 409


class IllegalTransition(ConflictError):
    def __init__(self, *, obj: object, current: str, target: str) -> None:
        label = type(obj).__name__
        super().__init__(
            f"{label} {getattr(obj, 'pk', '')} cannot go from '{current}' to '{target}'.",
            code="illegal_transition",
        )
        self.current = current
        self.target = target


class PermissionDeniedError(ServiceError):
    status_code = 403
