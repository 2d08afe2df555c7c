"""One driver per experiment folder: `driver.lock`, held while a search runs.

Two drivers on one folder would both train the remaining trials and interleave their rows and
study records. The lock is a POSIX record lock (`fcntl.lockf`) on `driver.lock` in the
folder the driver writes (for a URI storage, its local mirror): the kernel, or the NFS lock
manager on a shared file system, releases it when the holder exits or dies, so a killed
driver leaves no stale lock to clear by hand. The file itself stays, one line naming its last
holder (host, pid, since), which a second driver quotes when it is refused. Readers
(`report`, `export`, `compare`) never take it.

A POSIX lock belongs to the process and goes when the process closes any descriptor of the
file, so the holder must never open `driver.lock` itself while it holds it.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import os
import socket
import weakref
from pathlib import Path

from experiment.config import ConfigError

LOCK_FILE = "driver.lock"
HELD = {errno.EACCES, errno.EAGAIN}  # lockf's answers when another process holds it


class DriverLock:
    """A held lock; `release` (or the end of the process) lets the next driver in."""

    def __init__(self, path: Path, fd: int | None):
        self.path = path
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd) if fd is not None else None

    def release(self) -> None:
        if self._closer is not None:
            self._closer()  # closing the descriptor drops the lock


def acquire(folder: Path) -> DriverLock:
    """Hold `folder`'s driver lock, or a ConfigError naming the driver that holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in HELD:
            raise ConfigError(
                f"{folder}: another driver is running this search ({holder(path)}); wait for "
                "it or stop it (report, export and compare can read the folder meanwhile)"
            ) from None
        print(
            f"note: {path}: this file system cannot lock ({error.strerror}); nothing stops "
            "a second driver on this folder"
        )
        return DriverLock(path, None)
    since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    line = f"host {socket.gethostname()} pid {os.getpid()} since {since}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, line, 0)
    return DriverLock(path, fd)


def holder(path: Path) -> str:
    """The holder's line (`host H pid P since T`), as well as it can be read."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0][:200] if text else "a driver that has not yet named itself"
