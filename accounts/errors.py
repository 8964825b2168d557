class ApplicationError(Exception):
    """An expected failure of a service; views show `message` to the user."""

    def __init__(self, message: str, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
