"""A whole training run outside Ray: the `train` sub-command's work.

JSON lines on stdout, and in the output directory `config.yaml` (the experiment),
`metrics.jsonl` (one line per evaluation) and `checkpoint/` (after each evaluation); `resume`
continues from the checkpoint and gives the same numbers as an uninterrupted run on CPU. At the
end, on stderr: the MI sandwich (each estimate with its bound direction) and the floor report.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from experiment.config import ConfigError, Experiment
from experiment.files import write_atomic
from training.checkpoint import CHECKPOINT_FILE
from training.evaluation import floor_note, sandwich_line
from training.trainer import Trainer


def train(experiment: Experiment, out_dir: Path | None = None, resume: bool = False) -> dict:
    """Train one config to the end; print one JSON line per evaluation; return the last.

    With ``out_dir``: ``config.yaml`` (the experiment), ``metrics.jsonl`` (one line per
    evaluation) and ``checkpoint/`` (after each evaluation); ``resume`` continues from it.
    """
    trainer = Trainer(experiment)  # a population of one
    checkpoint = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = out_dir / "checkpoint"
        write_atomic(out_dir / "config.yaml", yaml.safe_dump(experiment.to_dict(), sort_keys=False))
        if resume and (checkpoint / CHECKPOINT_FILE).is_file():
            try:
                trainer.load_checkpoint(checkpoint)
            except (ValueError, KeyError) as error:  # another format, or another experiment's
                raise ConfigError(f"--resume: {error}") from None
        elif resume:
            print(f"note: no checkpoint in {checkpoint}; starting from step 0", file=sys.stderr)
    log = open(out_dir / "metrics.jsonl", "a" if resume else "w") if out_dir else None  # noqa: SIM115
    metrics: dict[str, Any] = {}
    try:
        for (metrics,) in trainer.run():
            line = json.dumps(_jsonable(metrics))
            print(line, flush=True)
            if log is not None:
                log.write(line + "\n")
                log.flush()
            if checkpoint is not None:
                trainer.save_checkpoint(checkpoint)
    finally:
        if log is not None:
            log.close()
    if metrics.get("status") == "ok":  # for people, on stderr: stdout stays JSON lines
        note = floor_note(metrics)
        print(sandwich_line(metrics), file=sys.stderr)
        print(note or "floors: no unit at a variance floor", file=sys.stderr)
    return metrics


def _jsonable(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Strict JSON: a NaN or infinite metric (e.g. of a diverged run) is written as null."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in metrics.items()
    }
