"""The bundled sample: the digits dataset and its three checkpoints, evaluated on demand.

``python -m core.engine.sample`` makes (or finds) the three sample runs; ``make run`` calls it so
the
dashboard opens populated. Nothing is trained or downloaded here: sample_data/ is committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.engine.inference import Progress
from core.runs import Run

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
DATASET = SAMPLE_DIR / "digits"
CHECKPOINTS = {
    name: SAMPLE_DIR / "checkpoints" / f"{name}.safetensors"
    for name in ("good", "overfit", "imbalanced")
}


def ensure_sample_runs(
    runs_dir: str | Path | None = None, *, progress: Progress | None = None
) -> dict[str, Run]:
    """Return {sample model name: run}, evaluating only those not yet in the store."""
    from core.engine.evaluate import evaluate

    return {
        name: evaluate(path, DATASET, runs_dir=runs_dir, device="cpu", progress=progress)
        for name, path in CHECKPOINTS.items()
    }


def main() -> int:
    """Evaluate the sample checkpoints, printing one line per run."""
    from core.engine.progress import ProgressBar

    for name, run in ensure_sample_runs(progress=ProgressBar(label="sample")).items():
        test = run.metrics["splits"]["test"]
        print(f"{name:<11} {run.path}  test accuracy {test['accuracy']:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
