"""Search results as DataFrames, Pareto fronts of NLL against mutual information, an HTML
dashboard, and export of chosen trials as experiment files that re-train as they are.

    import analysis
    trials = analysis.load("results/quick")           # one row per trial (several dirs: one each)
    curves = analysis.load_curves("results/quick")    # one row per evaluation of each trial

The top layer below the CLI: it reads only what a search wrote (experiment.yaml, trials.csv,
Tune's result.json), so it works on a running search, a finished one or a bucket
(docs/ARCHITECTURE.md; the columns, figures and export options: docs/ANALYSIS.md).
"""

from analysis.results import load, load_curves

__all__ = ["load", "load_curves"]
