"""The Leakage view over a table of held-out/train pairs: the two ways of pairing, and counts.

Pure: the pairs come from core.images.leakage.leak_pairs (perceptual hash) or
core.images.embeddings.embedding_pairs (model embeddings), both with the columns of
core.images.leakage.PAIR_COLUMNS. Each way of pairing is one :class:`Method` in
:data:`METHODS` (a registry, so the page never branches on the method): its threshold's
range and default, and the sentences that name the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

HELD_OUT = ("test", "val")  # splits checked against train, in the order offered


@dataclass(frozen=True)
class Method:
    """One way of pairing held-out and train images, and the threshold that makes a pair."""

    kind: str  # the shared work it needs: "phash" (hashes) or "embeddings"
    verb: str  # that work in progress words: "Hashing" the images
    arg: str  # the pairing function's threshold keyword (core.images leak/embedding pairs)
    key: str  # session key of its threshold (a widget key: keep it, links and state use it)
    slider: str  # the threshold's label
    low: float  # the threshold's range, default and step (ints for the Hamming distance)
    high: float
    default: float
    step: float
    fmt: str | None  # the slider's printf format (None: Streamlit's default)
    help: str  # what the threshold means, for the slider's help
    within: str  # "{t}": the threshold in the count line
    none_found: str  # "{split}", "{t}": the sentence when no pair is found
    closeness: str  # "{distance}", "{similarity}": one pair's closeness, markdown

    def within_text(self, threshold: float) -> str:
        """Return the threshold as the count line says it: "within 4 bits"."""
        return self.within.format(t=threshold)

    def none_text(self, split: str, threshold: float) -> str:
        """Return the sentence shown when ``split`` has no image paired at ``threshold``."""
        return self.none_found.format(split=split, t=threshold)

    def closeness_text(self, distance: float, similarity: float) -> str:
        """Return one pair's closeness: "Distance **3** · 95% similar"."""
        return self.closeness.format(distance=distance, similarity=similarity)


PHASH, EMBEDDINGS = "Perceptual hash", "Model embeddings"
METHODS: dict[str, Method] = {
    PHASH: Method(
        kind="phash",
        verb="Hashing",
        arg="max_distance",
        key="lk_distance",
        slider="Max Hamming distance",
        low=0,
        high=16,
        default=4,  # small images (the 32 px digits) start to collide above ~4 bits
        step=1,
        fmt=None,
        help="Pairs whose hashes differ in at most this many of 64 bits. Lower is stricter: "
        "0 finds exact copies only; small images (digits) start to look alike above about 4.",
        within="within {t} bits",
        none_found="No {split} image is within {t} bits of a training image.",
        closeness="Distance **{distance}** · {similarity:.0%} similar",
    ),
    EMBEDDINGS: Method(
        kind="embeddings",
        verb="Embedding",
        arg="min_similarity",
        key="lk_similarity",
        slider="Min cosine similarity",
        low=0.90,
        high=1.0,
        # A trained classifier packs each class tightly: at 0.99 most same-class images pair up.
        default=0.998,
        step=0.001,
        fmt="%.3f",
        help="Pairs whose embeddings have at least this cosine similarity. Higher is stricter: "
        "a trained classifier packs a whole class close together; near-copies sit above ~0.998.",
        within="at cosine similarity ≥ {t:.3f}",
        none_found="No {split} image has cosine similarity ≥ {t:.3f} with a training image.",
        closeness="Cosine similarity **{similarity:.4f}**",
    ),
}


def held_out_splits(splits: Iterable[str]) -> list[str]:
    """Return the held-out splits Leakage can check (test, then val), none without train."""
    splits = list(splits)
    return [s for s in HELD_OUT if s in splits] if "train" in splits else []


@dataclass(frozen=True)
class Summary:
    """How many pairs were found and how many held-out images they take in."""

    n_pairs: int  # held-out/train pairs (an image may pair with several train images)
    leaked: tuple[str, ...]  # the held-out images in some pair, their paths sorted
    n_differ: int  # pairs whose two images carry different true labels

    def count_line(self, split: str, n_split: int, within: str) -> str:
        """Return the page's count line (markdown)."""
        pairs = "pair" if self.n_pairs == 1 else "pairs"
        verb = "duplicates" if len(self.leaked) == 1 else "duplicate"
        return (
            f"**{self.n_pairs:,}** {split}–train {pairs} {within} · **{len(self.leaked):,}** of "
            f"{n_split:,} {split} images nearly {verb} a training image"
        )


def summarise(pairs: pd.DataFrame) -> Summary:
    """Return the :class:`Summary` of a PAIR_COLUMNS table."""
    return Summary(
        n_pairs=len(pairs),
        leaked=tuple(sorted(set(pairs["path"]))),
        n_differ=int(pairs["labels_differ"].sum()),
    )
