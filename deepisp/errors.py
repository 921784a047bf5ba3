"""User-facing errors: one line that says what went wrong and what to do.

Anything raised as `DeepISPError` is printed by the CLI as `error: <message>` with exit code 2 and no
traceback; everything else is a bug and keeps its traceback.
"""


class DeepISPError(Exception):
    """An error caused by the user's input (file, flag, data layout), with a one-line fix."""


def printable(text: object) -> str:
    """`text` safe to print as (part of) one line: control characters (a newline or escape sequence in a file name
    or in adb's output) and the undecodable bytes of non-UTF-8 file names shown as \\xNN, never sent to the terminal."""
    return "".join(c if c.isprintable() else f"\\x{_byte(c):02x}" if _byte(c) < 0x100 else f"\\u{ord(c):04x}" for c in str(text))


def _byte(c: str) -> int:
    """A surrogate-escaped byte (os.fsdecode's 0xDC80-0xDCFF) as the byte it stands for; other characters as is."""
    return ord(c) - 0xDC00 if 0xDC80 <= ord(c) <= 0xDCFF else ord(c)
