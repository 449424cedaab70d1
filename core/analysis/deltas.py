"""How a split's headline metrics change when some images are left out (Leakage's tiles).

Pure: takes two ``metrics.json`` split entries, e.g. a split with every image and the same
split without its leaked images (core.images.leakage.metrics_without).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.analysis.diagnostics import SplitMetrics
from core.analysis.tables import count_delta, points_delta

# label and how to read it from a metrics.json split entry, in the order shown
HEADLINE: dict[str, tuple[str, Callable[[SplitMetrics], float]]] = {
    "accuracy": ("Accuracy", lambda m: m["accuracy"]),
    "balanced_accuracy": ("Balanced accuracy", lambda m: m["balanced_accuracy"]),
    "macro_f1": ("Macro F1", lambda m: m["macro"]["f1"]),
}


@dataclass(frozen=True)
class Change:
    """One headline number with every image (before) and without the left-out ones (after)."""

    label: str  # "Images", "Accuracy", ...
    before: float  # an image count, or a share in [0, 1]
    after: float
    delta: str | None  # as shown: "-11" images, "+1.2 pts"; None when both show the same
    count: bool  # True for the image count (no percentage, no good/bad colour)

    def shown(self, value: float) -> str:
        """Return ``value`` as this number is shown: "1,234" images or "98.7%"."""
        return f"{int(value):,}" if self.count else f"{value:.1%}"

    def note(self, split: str) -> str:
        """Return the tile's help: what the number is, and its value with every image."""
        before = self.shown(self.before)
        if self.count:
            return f"{split} images left after removing the leaked ones (of {before})."
        return f"With every {split} image: {before}."


def changes(before: SplitMetrics, after: SplitMetrics) -> list[Change]:
    """Return the image count, then each :data:`HEADLINE` metric, before and after."""
    n = Change("Images", before["n"], after["n"], count_delta(before["n"], after["n"]), True)
    return [n] + [
        Change(label, get(before), get(after), points_delta(get(before), get(after)), False)
        for label, get in HEADLINE.values()
    ]
