"""Atomic file writes: every output of deepisp appears whole or not at all.

    with atomic_path(out) as tmp:
        write_something(tmp)

writes to a unique hidden file in the same folder (same suffix, so writers that pick a format from the
extension still work) and renames it onto `out` only if the block finishes; on any error it is deleted.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on normal exit move it onto `path`, on error delete it."""
    path = Path(path)
    # A fresh unique name rather than mkstemp: mkstemp creates the file 0600, and the final file should get
    # the ordinary umask permissions of whatever writer creates it.
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
