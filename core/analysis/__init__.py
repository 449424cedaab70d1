"""Run → numbers: pure numpy/pandas/scikit-learn over a Run's arrays and metrics.json."""
