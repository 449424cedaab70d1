"""ClassLens engine: checkpoints + image folders -> stored runs -> metrics. No streamlit here.

Entry points: ``core.engine.evaluate.evaluate`` (make or fetch a run), ``core.runs.RunStore`` (read
runs), ``core.analysis.metrics`` (pure metric functions), and the CLI ``python -m core``.
"""

from core.errors import ClassLensError

__all__ = ["ClassLensError"]
