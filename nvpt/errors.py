"""One exception type for mistakes a user can fix.

Entry points catch `NVPTError` and print its message on one line (exit code 2);
anything else is a bug and keeps its traceback.
"""


class NVPTError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""


def one_line(value) -> str:
    """str(value) with its whitespace runs and line breaks collapsed to single spaces."""
    return " ".join(str(value).split())
