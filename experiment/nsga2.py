"""Optuna's NSGA-II, picklable: Tune's searcher checkpoint pickles the study, sampler and all.

Optuna 5.1 gave its genetic samplers a `threading.Lock` (guarding their generation cache)
and no `__getstate__`, so pickling one raises "cannot pickle '_thread.lock' object". A lock
holds no state: it is left out of the pickle and made new when it is loaded.

The class keeps Optuna's name: a genetic sampler writes its generations into the study under
keys named after its class (`<class name>:generation`), so with the same name a study begun
with Optuna's NSGA-II resumes with this one, and the other way round.
"""

from __future__ import annotations

import threading
from typing import Any

from optuna import samplers

_LOCK = type(threading.Lock())


class NSGAIISampler(samplers.NSGAIISampler):
    def __getstate__(self) -> dict[str, Any]:
        locks = [k for k, v in vars(self).items() if isinstance(v, _LOCK)]
        kept = {k: v for k, v in vars(self).items() if k not in locks}
        return {**kept, "_locks_left_out": locks}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        locks = state.pop("_locks_left_out", [])
        vars(self).update(state)
        for name in locks:
            setattr(self, name, threading.Lock())
