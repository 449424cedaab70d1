"""``python -m bench``: run every benchmark and print its ratios.

Each entry is a module of this package with a ``main() -> int``; adding a benchmark is one
line here.
"""

import importlib
import sys

BENCHMARKS = (
    "pages",  # server-side rerun time of every page on the bundled sample
    "analysis",  # every page's data for 50,000 images x 1,000 classes vs scikit-learn
    "dashboard",  # page times and bytes sent for that run through AppTest
    "memory",  # peak RSS of opening that run
    "inference",  # images/s of files -> stored run vs the bare forward pass (CPU or GPU)
    "gpu",  # pipeline and forward vs the card's FLOP ceiling (prints "no CUDA device" on CPU)
    "bootstrap",  # the Compare page's paired bootstrap (1000 resamples of 3000 rows)
    "slices",  # image properties of 50,000 files; weak-segment search at 50,000 x 20 columns
    "slices_page",  # the Slices page's rerun at 50,000 images x 20 metadata columns
)


def main() -> int:
    """Run each benchmark in BENCHMARKS in turn; return the first non-zero status, else 0."""
    status = 0
    for name in BENCHMARKS:
        print(f"\n== bench.{name} ==", flush=True)
        rc = importlib.import_module(f"bench.{name}").main()
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
