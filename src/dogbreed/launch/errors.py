"""The launcher's one error type: what the user must act on."""


class LaunchError(RuntimeError):
    """A launcher input or an AWS answer that the user must act on; the message says what."""
