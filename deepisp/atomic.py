"""File I/O that can neither lose nor swamp: atomic writes (every output of deepisp appears whole or not at
all) and bounded reads (`read_bounded`: a regular file of a sane size, never a FIFO, device or giant file).

    with atomic_path(out) as tmp:
        write_something(tmp)

writes to a unique hidden file in the same folder (same suffix, so writers that pick a format from the
extension still work) and renames it onto `out` only if the block finishes; on any error it is deleted.
A process killed outright (kill -9, power loss) cannot delete its temp file, so the name carries the writer's
PID, and the next write of the same output removes temp files whose writer is no longer running. Only names
that prove they were made here are removed: `.{stem}.{pid}-{nonce}-{check}.deepisp-tmp{suffix}`, with a
16-hex-digit nonce and `check` a digest of stem, PID and nonce, and only regular files (never a link) owned by
this user; a user's file that merely looks like a temp name is never touched.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deepisp.errors import DeepISPError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on normal exit move it onto `path`, on error delete it."""
    path = Path(path)
    sweep_stale_temps(path)
    # A fresh unique name rather than mkstemp: mkstemp creates the file 0600, and the final file should get
    # the ordinary umask permissions of whatever writer creates it.
    tmp = path.with_name(temp_name(path.stem, os.getpid(), uuid.uuid4().hex[:16], path.suffix))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            raise DeepISPError(f"cannot write {path}: {e.strerror}; free some space or write elsewhere (nothing was written)") from None
        raise


# Errors that only a write raises (a full disk or quota, a file too large, a read-only file system): one clear
# line for the user wherever deepisp writes.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
TEMP_TAG = ".deepisp-tmp"
_TEMP_NAME = re.compile(r"(?P<pid>[0-9]{1,10})-(?P<nonce>[0-9a-f]{16})-(?P<check>[0-9a-f]{16})")


def _check(stem: str, pid: int, nonce: str) -> str:
    return hashlib.sha256(f"deepisp-atomic:{stem}:{pid}:{nonce}".encode("utf-8", "surrogateescape")).hexdigest()[:16]


# A file name is at most 255 bytes on common file systems; the temp name adds up to 62 to the output's stem.
MAX_NAME_BYTES = 255
_TEMP_EXTRA = 1 + 1 + 10 + 1 + 16 + 1 + 16 + len(TEMP_TAG)


def _short_stem(stem: str, suffix: str) -> str:
    """The output's stem as its temp name carries it: cut (on a character boundary) so the temp name fits."""
    room = MAX_NAME_BYTES - _TEMP_EXTRA - len(suffix.encode("utf-8", "surrogateescape"))
    while len(stem.encode("utf-8", "surrogateescape")) > room:
        stem = stem[:-1]
    return stem


def temp_name(stem: str, pid: int, nonce: str, suffix: str) -> str:
    """The temp file name of an output `stem + suffix` written by process `pid` (module doc)."""
    stem = _short_stem(stem, suffix)
    return f".{stem}.{pid}-{nonce}-{_check(stem, pid, nonce)}{TEMP_TAG}{suffix}"


def _ours(f: Path, stem: str, suffix: str) -> int | None:
    """The writer PID of `f` if its name proves it is a temp file of output `stem + suffix` made here, else None."""
    stem = _short_stem(stem, suffix)
    middle = f.name[len(stem) + 2 : len(f.name) - len(TEMP_TAG) - len(suffix)]
    m = _TEMP_NAME.fullmatch(middle)
    if m is None or f.name != temp_name(stem, int(m["pid"]), m["nonce"], suffix):
        return None
    return int(m["pid"])


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
    Returns what was deleted. Only provably own temp files are touched (module doc)."""
    removed = []
    for f in path.parent.glob(f".{glob.escape(_short_stem(path.stem, path.suffix))}.*{TEMP_TAG}{glob.escape(path.suffix)}"):
        pid = _ours(f, path.stem, path.suffix)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        try:
            st = f.lstat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid():
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def make_folder(path: str | Path) -> Path:
    """`path` as a folder, made with its parents when missing; a DeepISPError when a file (or a file among its
    parents) is in the way or it cannot be made."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DeepISPError(f"{path} is a file, not a folder: pass a folder (it is made when missing)") from None
    except OSError as e:
        raise DeepISPError(f"cannot make the folder {path}: {e.strerror or e}") from None
    return path


def read_bounded(path: str | Path, max_bytes: int, what: str) -> bytes:
    """The bytes of the regular file `path`, at most `max_bytes` of them. A FIFO, device or folder (which could
    block forever or never end: /dev/zero) and anything larger (a sparse multi-GB file) are refused with a
    DeepISPError naming `what` the file should have been; FileNotFoundError and PermissionError pass through
    for the caller to word."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a FIFO must not wait for a writer
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DeepISPError(f"{path} is not a regular file; pass {what}")
        if st.st_size > max_bytes:
            raise DeepISPError(f"{path} is {st.st_size / 2**20:.0f} MiB, more than any {what} ({max_bytes / 2**20:.0f} MiB at most); refused")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise DeepISPError(f"{path} grew past {max_bytes / 2**20:.0f} MiB while read; refused")
    return data
