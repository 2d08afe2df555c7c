"""Writing results files so that neither a reader nor a fault ever sees half of one.

`write_atomic` writes a temporary file in the same folder (a rename is atomic only within one
file system), flushes it to disk, then renames it over the target; on any failure the
temporary file is removed and the error raised, so a full disk leaves the old file whole and
no `*.tmp` behind. `storage_fault` tells the faults that stop a search (a full or read-only
disk, a quota) from the others, and `fault_line` words one for people.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

FAULTS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT}  # the disk, not the input: free it, resume
FAULT_WORDS = ("No space left on device", "Read-only file system", "Disk quota exceeded")


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Replace `path` by `data` (text as UTF-8) in one step; returns the path."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(path))
    payload = data.encode() if isinstance(data, str) else data
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:  # mkstemp makes the file private; keep the target's mode, or an ordinary file's
        os.fchmod(handle, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return path


def storage_fault(error: BaseException) -> OSError | None:
    """The full-disk, read-only or quota `OSError` behind `error` (its causes and contexts
    included, as Ray wraps them), else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in FAULTS:
            return current
        current = current.__cause__ or current.__context__
    return None


def fault_text(text: str) -> str | None:
    """The words of a storage fault in an error's text (a trial's, from another process)."""
    return next((words for words in FAULT_WORDS if words in text), None)


def fault_error(words: str, where: str) -> OSError:
    """The OSError of a fault seen only as text (`fault_text`), e.g. in a trial's error."""
    code = {FAULT_WORDS[0]: errno.ENOSPC, FAULT_WORDS[1]: errno.EROFS}.get(words, errno.EDQUOT)
    return OSError(code, words, where)


def fault_line(error: OSError) -> str:
    """`<file>: No space left on device`, for one `error:` line."""
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error}"
