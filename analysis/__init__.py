"""Search results as DataFrames, Pareto fronts of NLL against mutual information, an HTML
dashboard, and export of chosen trials as experiment files that re-train as they are."""
