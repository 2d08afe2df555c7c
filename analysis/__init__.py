"""Search results as DataFrames, Pareto fronts of NLL against mutual information, an HTML
dashboard, and export of chosen trials as experiment files that re-train as they are.

    import analysis
    trials = analysis.load("results/quick")           # one row per trial (several dirs: one each)
    curves = analysis.load_curves("results/quick")    # one row per evaluation of each trial
"""

from analysis.results import load, load_curves

__all__ = ["load", "load_curves"]
