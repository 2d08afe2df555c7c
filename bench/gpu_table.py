"""One table cell for bench/gpu.sh: the figure a row's log holds.

python bench/gpu_table.py KIND LOG     # KIND: pytest, checks, population, memory, train
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def figure(kind: str, text: str) -> str:
    lines = json_lines(text)
    if kind == "pytest":
        return text.strip().splitlines()[-1]
    if kind == "checks":
        return "; ".join(f"{r['check']} {r['status']}: {r['figure']}" for r in lines)
    if kind == "population":
        result = lines[-1]
        return "; ".join(
            f"{k}: {v['ratio']}x, {v['population_samples_per_s']:.0f} against "
            f"{v['sequential_samples_per_s']:.0f} samples/s"
            for k, v in result.items()
            if isinstance(v, dict)
        )
    if kind == "memory":
        return "; ".join(
            f"2x{r['width']}: {r['mib_per_member']} MiB a member, {r['members_that_fit']} fit "
            f"in {r['budget_gib']} GiB"
            for r in lines
            if "members_that_fit" in r
        )
    last = lines[-1]  # train
    return f"step {last['step']} {last['status']}: nll {last['nll']:.2f}, " + (
        f"{last['train_samples_per_s']:.0f} samples/s"
    )


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    try:
        print(figure(kind, Path(path).read_text()))
    except (IndexError, KeyError, ValueError, OSError) as error:
        print(f"(no figure: {type(error).__name__}; see {path})")
