"""`require_system` (tests/conftest.py): a test that needs a system program skips without it,
naming the Debian package, and fails instead under CI=true (which installs them all)."""

from __future__ import annotations

from pathlib import Path

import postgres_server
import pytest
from conftest import require_system


def test_a_missing_program_skips_the_test_naming_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Debian package `chromium`"):
        require_system("a Chromium browser", "chromium", available=False)
    require_system("a Chromium browser", "chromium", available=True)  # present: runs


def test_under_ci_a_missing_program_fails_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="`postgresql`.*CI=true requires it"):
        require_system("a PostgreSQL server", "postgresql", available=False)


def test_postgres_binaries_are_found_by_version(tmp_path: Path) -> None:
    assert postgres_server.server_bin(tmp_path) is None  # nothing installed there
    for version in ("9.6", "15", "13"):
        folder = tmp_path / version / "bin"
        folder.mkdir(parents=True)
        (folder / "initdb").touch()
        (folder / "pg_ctl").touch()
    found = postgres_server.server_bin(tmp_path)
    if postgres_server.as_server_user() and found is None:
        pytest.skip("root without the `postgres` user: server_bin refuses, as it should")
    assert found == tmp_path / "15" / "bin"
