"""A throwaway PostgreSQL server for tests that point Optuna at a `postgresql://` storage.

`serve` runs `initdb --auth=trust` in a fresh temporary directory, starts the server with
`pg_ctl` on 127.0.0.1 and a free port (its unix socket inside that directory, fsync off: the
data is thrown away), yields a SQLAlchemy URL for the `postgres` database, and at the end stops
it with `pg_ctl stop -m immediate` and removes the directory. tests/conftest.py wraps it in the
session-scoped `postgres_url` fixture: tests share one server, so give each study its own name.

The binaries come from Debian's `postgresql` package (/usr/lib/postgresql/VERSION/bin, the
highest version wins: `server_bin`); without them the fixture skips, or fails under `CI=true`
(`conftest.require_system`: CI installs them, .ci/run). PostgreSQL refuses to run as root, and
CI runs as root: then the directory is handed to the `postgres` system user that the package
creates, and every PostgreSQL command runs as that user through `runuser -u postgres --`
(util-linux, always on Debian: `su` made for root, with no password prompt and no shell of the
user's in between). The URL names the psycopg 3 driver, `postgresql+psycopg://`, which the
`psycopg[binary]` wheel provides.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
PACKAGE = "postgresql"  # Debian's: the server binaries and, as root needs, the `postgres` user


def server_bin(root: Path | None = None) -> Path | None:
    """The bin folder of the highest PostgreSQL version installed under `root` (default
    `PG_ROOT`) with initdb and pg_ctl; None without one, or as root without the `postgres`
    user the package creates."""
    root = PG_ROOT if root is None else root
    found = [p.parent for p in root.glob("*/bin/initdb") if (p.parent / "pg_ctl").exists()]
    if not found or (as_server_user() and not _has_user("postgres")):
        return None
    return max(found, key=lambda b: [int(n) for n in re.findall(r"\d+", b.parent.name)])


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_server_user() -> list[str]:
    """The prefix that runs a command as a user PostgreSQL accepts: `postgres` when we are root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def run(cmd: list[str], cwd: Path, log: Path | None = None) -> None:
    """Run a PostgreSQL command; when it fails, fail the test with its output and the `log`."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        server_log = log.read_text() if log is not None and log.exists() else ""
        pytest.fail(
            f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}{done.stderr}{server_log}",
            pytrace=False,
        )


def serve(bin_dir: Path) -> Iterator[str]:
    """A SQLAlchemy URL to the `postgres` database of a fresh server, stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    data, sock, log = root / "data", root / "sock", root / "server.log"
    sock.mkdir()
    prefix = as_server_user()
    if prefix:
        user = pwd.getpwnam("postgres")  # there: `server_bin` checked
        for path in (root, sock):
            os.chown(path, user.pw_uid, user.pw_gid)
    started = False
    try:
        run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"]
            + ["--encoding=UTF8", "--locale=C", "--no-sync"],
            root,
        )
        port = free_port()
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{sock}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
        run([*pg_ctl, "-l", str(log), "-w", "-t", "60", "start"], root, log)
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([*pg_ctl, "stop", "-m", "immediate"], cwd=root, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
