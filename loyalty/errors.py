class LoyaltyError(Exception):
    """A refusal a support agent can read: the message says what was refused and why, with the numbers."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message
