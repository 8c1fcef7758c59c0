"""The one exception type for bad user input (config, flags, data): exit code 2, one message, no traceback."""


class BnexpError(Exception):
    """Raised for problems the user can fix; the CLI prints the message and exits with code 2."""

    exit_code = 2
