"""The status words of a run, a trial, a population member and a trials.csv row, defined once.

The trainer writes the first three (`training`), the search the others (`search`: the study's
user attributes, trials.csv), the analysis reads them all; this module sits below all three
(the layers: docs/ARCHITECTURE.md), so each imports the words from here instead of spelling them.
"""

from __future__ import annotations

RUNNING = "running"  # training: evaluations so far, more steps to take
OK = "ok"  # trained every step with finite losses
DIVERGED = "diverged"  # stopped at a non-finite loss or term (never retried: it would again)
REFUSED = "refused"  # the compiler refused the point: never trained
ERROR = "error"  # the trial raised, after `search.max_failures` retries
PRUNED = "pruned"  # stopped at a rung by successive halving (search.scheduler: halving)
IDLE = "idle"  # training: a rolling population's slot without a member to train
STOPPED = "stopped"  # ended before its last step: stopped by the scheduler (asha) or the search
ORPHANED = "orphaned"  # asked of Optuna by a driver that died before Tune recorded it: never run
POPULATION = "population"  # a population trial's own result: each member carries its status
UNFINISHED = "unfinished"  # analysis: evaluations on disk, no trials.csv row yet

ROW_STATUSES = (OK, DIVERGED, REFUSED, STOPPED, PRUNED, ERROR)  # what a trials.csv row can say
TOLD_AS_COMPLETE = (OK, STOPPED)  # told to Optuna with their values (when finite)
NOT_COUNTED = (REFUSED, ORPHANED)  # never trained: not part of the search's budget
# the user attribute of a pruned Optuna trial that holds its values at the rung (Optuna keeps
# none for a pruned multi-objective trial): written by the study, read by the GP
PRUNED_VALUES_ATTR = "values"


def final_status(reported: str | None, error: bool = False) -> str:
    """The status of a trial or member that has ended, from its last reported status:
    `error` when the trial raised; `stopped` when it ended still running (or before it
    reported); else what it reported."""
    if error:
        return ERROR
    if reported in (None, "", RUNNING):
        return STOPPED
    return reported
