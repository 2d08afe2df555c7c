"""`python -m objectives`: the DESIGN.md contract (exit codes, one JSON object, one error line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "objectives", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_table_prints_the_six_computed_dimensions() -> None:
    result = run("table")
    assert result.returncode == 0
    dimensions = [int(line.split()[-1]) for line in result.stdout.splitlines()[1:]]
    assert dimensions == [13, 13, 17, 17, 18, 18]


def test_classify_prints_one_json_object() -> None:
    lagrangian = {
        "alpha1": 0,
        "alpha2": 3,
        "lambdas": {"KL(q(x|z)||p(x|z))": 1, "KL(q(z)||p(z))": 4},
    }
    result = run("classify", "--json", json.dumps(lagrangian))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["toolbox"] == "likelihood-based"
    assert out["constraint_set"] == "C3"
    assert out["tractable_form"] == {
        "E_q[log p(x|z)]": -1.0,
        "E_q[log q(z|x)]": 4.0,
        "E_q[log p(z)]": -4.0,
    }
    assert out["residual"] == {}


def test_classify_intractable_names_the_residual_term_and_exits_zero() -> None:
    lagrangian = {"lambdas": {"MMD(q(z|x)||p(z|x))": 1, "KL(q(x)||p(x))": 1}}
    result = run("classify", "--json", json.dumps(lagrangian))
    assert result.returncode == 0
    out = json.loads(result.stdout)
    assert out["toolbox"] == "intractable"
    assert "MMD(q(z|x)||p(z|x))" in out["residual"]


@pytest.mark.parametrize(
    ("lagrangian", "needle"),
    [
        ('{"lambdas": {"KL(q(w)||p(w))": 1}}', "unknown term"),
        ('{"lambdas": {"KL(q(x,z)||p(x,z))": -1}}', "must be > 0"),
        ('{"lambdas": {"KL(q(x,z)||p(x,z))": 0}}', "must be > 0"),
        ('{"lambdas": {"KL(q(x,z)||p(x,z))": "big"}}', "expected a number"),
        ('{"alpha1": "one", "lambdas": {"KL(q(x,z)||p(x,z))": 1}}', "alpha1"),
        ('{"lambdas": {"KL(q(z)||p(z))": 1}}', "no constraint set"),
        ('{"gamma": 1}', "unknown key"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line_naming_the_problem(
    lagrangian: str, needle: str
) -> None:
    result = run("classify", "--json", lagrangian)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_explain_a_preset_in_words() -> None:
    result = run("explain", "beta-vae", "--beta", "4")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "3 I_q(x;z) + KL(q(x|z)||p(x|z)) + 4 KL(q(z)||p(z))" in text
    assert "minimises I_q(x;z)" in text
    assert "likelihood-based" in text
    assert "- E_q[log p(x|z)] + 4 E_q[log q(z|x)] - 4 E_q[log p(z)]" in text


def test_explain_information_maximising_and_intractable() -> None:
    assert "maximises I_q(x;z)" in run("explain", "beta-vae", "--beta", "0.5").stdout
    result = run("explain", '{"lambdas": {"JS(q(x|z)||p(x|z))": 1, "KL(q(z)||p(z))": 1}}')
    assert result.returncode == 0
    assert "intractable" in result.stdout and "JS(q(x|z)||p(x|z))" in result.stdout


def test_run_search_explain_is_the_same_explanation() -> None:
    result = subprocess.run(
        [sys.executable, "run_search.py", "explain", "mmd-vae", "--alpha", "-1", "--lambda", "500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "unary-likelihood-free" in result.stdout
    assert "- E_q[log p(x|z)] + 500 MMD(q(z)||p(z))" in result.stdout
