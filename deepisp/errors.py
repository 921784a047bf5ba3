"""User-facing errors: one line that says what went wrong and what to do.

Anything raised as `DeepISPError` is printed by the CLI as `error: <message>` with exit code 2 and no
traceback; everything else is a bug and keeps its traceback.
"""


class DeepISPError(Exception):
    """An error caused by the user's input (file, flag, data layout), with a one-line fix."""
