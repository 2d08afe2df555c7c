"""What `pip install .` (or a wheel on each node of a cluster) gives a user with no clone: the
console script `infoae-search` (run_search.main) and the shipped experiment files, found by
`configs/NAME.yaml` as in the clone. The wheel is built here and unpacked into a folder that
stands in for site-packages, and a process started elsewhere imports from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels = tmp_path_factory.mktemp("wheels")
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*build, "-q", "-w", str(wheels)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = wheels.glob("infoae_search-*.whl")
    site = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(wheel).extractall(site)
    return site


def test_the_wheel_carries_the_console_script_and_every_shipped_file(installed: Path) -> None:
    (entry_points,) = installed.glob("infoae_search-*.dist-info/entry_points.txt")
    assert "infoae-search = run_search:main" in entry_points.read_text()
    shipped = sorted(p.name for p in (installed / "infoae_configs").glob("*.yaml"))
    assert shipped == sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))


def test_without_a_clone_the_demo_and_configs_paths_are_the_installed_files(
    installed: Path, tmp_path: Path
) -> None:
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
        "import run_search; from experiment.config import load_experiment; "
        "print(run_search.DEFAULT_EXPERIMENT); "
        "print(run_search.shipped(Path('configs/mog-elbo.yaml'))); "
        "print(load_experiment(run_search.DEFAULT_EXPERIMENT).name)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(installed)],
        cwd=tmp_path,  # no configs/ here
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    demo, mog, name = done.stdout.splitlines()
    assert Path(demo) == installed / "infoae_configs" / "quick.yaml"
    assert Path(mog) == installed / "infoae_configs" / "mog-elbo.yaml"
    assert name == "quick"
