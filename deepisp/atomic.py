"""Atomic file writes: every output of deepisp appears whole or not at all.

    with atomic_path(out) as tmp:
        write_something(tmp)

writes to a unique hidden file in the same folder (same suffix, so writers that pick a format from the
extension still work) and renames it onto `out` only if the block finishes; on any error it is deleted.
A process killed outright (kill -9, power loss) cannot delete its temp file, so the name carries the writer's
PID, and the next write of the same output removes temp files whose writer is no longer running.
"""

from __future__ import annotations

import glob
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on normal exit move it onto `path`, on error delete it."""
    path = Path(path)
    sweep_stale_temps(path)
    # A fresh unique name rather than mkstemp: mkstemp creates the file 0600, and the final file should get
    # the ordinary umask permissions of whatever writer creates it.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sweep_stale_temps(path: Path) -> list[Path]:
    """Delete the temp files of `path` left by writers that died (PID in the name no longer running).
    Returns what was deleted. Only names of our own pattern are touched."""
    removed = []
    for f in path.parent.glob(f".{glob.escape(path.stem)}.*.tmp{glob.escape(path.suffix)}"):
        pid = f.name[len(path.stem) + 2 :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed
