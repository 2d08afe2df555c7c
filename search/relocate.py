"""A resumed search's study: this driver's paths, the saved state's progress; no Ray.

Tune saves the searcher's state (a pickled `FamilyStudy`) in the experiment folder. Its
journal path, owner and experiment were those of the driver that saved it; the folder may
since have been moved, copied, or fetched from its URI to another machine. So a resumed
driver never takes them from the saved state: it builds its study from its own plan
(`search.tune`) and takes from the saved one only what no plan can re-derive: which Tune trial
holds which Optuna trial (`numbers`), the rolling trials, and the sampler with its random
state (so the points asked next are those an uninterrupted search would ask).
"""

from __future__ import annotations

from search.study import FamilyStudy

PROGRESS = ("numbers", "rolling_trials", "sampler")  # the saved state's own; the rest re-derived


def resumed(saved: FamilyStudy, here: FamilyStudy) -> FamilyStudy:
    """`here` (this driver's study, not yet opened) with `saved`'s progress, unopened."""
    state = here.__getstate__()
    kept = saved.__getstate__()
    for name in PROGRESS:
        if name in kept:
            state[name] = kept[name]
    study = FamilyStudy.__new__(FamilyStudy)
    study.__setstate__(state)
    return study
