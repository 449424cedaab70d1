"""Slices (issue 14): image properties of 50,000 files, and the weak-segment search at
50,000 images x 20 columns.

Properties: 50,000 PNGs (``SIZE`` px grey-and-colour noise with a shape) written to a temporary
folder, measured by ``core.images.properties.measure_files`` in this process and on worker
processes; the ratio to decoding alone (PIL open + RGB convert, the floor any measurement pays)
says what the numpy measurements cost on top. Search: a slice table of 50,000 test rows
(10 categorical columns of 4-8 values, 10 numeric columns, a planted weak value), timed for
``slices.weak_segments`` (singles and pairs) and one ``per_value`` table.

``python -m bench.slices [n_images] [size]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy import stats

from core.analysis import slices
from core.images import properties

N = 50_000
SIZE = 32  # px a side: the BENCHMARKS.md figure (50,000 32x32 PNGs)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def write_images(folder: Path, n: int, size: int) -> list[Path]:
    """Write ``n`` small PNGs (noise plus a bright square) and return their paths."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        a, b = rng.integers(0, size // 2, 2)
        pixels[a : a + size // 3, b : b + size // 3] += 150
        path = folder / f"{i:06d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _decode_only(paths: list[Path]) -> None:
    for p in paths:
        with Image.open(p) as img:
            np.asarray(img.convert("RGB"))


def _split_cost(paths: list[Path]) -> tuple[float, float]:
    """Return (seconds opening and decoding, seconds in ``properties.measure``) over
    ``paths`` in one pass: what measuring on the evaluation's loader workers, where the
    image is already decoded, would save (the first) and add to every evaluation (the
    second)."""
    t_decode = t_measure = 0.0
    for p in paths:
        start = time.perf_counter()
        with Image.open(p) as img:
            img.load()
            mid = time.perf_counter()
            properties.measure(img)
        t_decode += mid - start
        t_measure += time.perf_counter() - mid
    return t_decode, t_measure


def slice_table(n: int = N, seed: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
    """Return a 20-column slice table of ``n`` test rows with one weak value planted."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {"split": np.full(n, "test")}
    kinds = {}
    for i in range(10):
        data[f"cat{i}"] = rng.choice([f"v{j}" for j in range(4 + i % 5)], n)
        kinds[f"cat{i}"] = "categorical"
    for i in range(10):
        data[f"num{i}"] = rng.normal(size=n)
        kinds[f"num{i}"] = "numeric"
    df = pd.DataFrame(data)
    p_ok = np.where(df["cat3"] == "v1", 0.80, 0.90)
    df["correct"] = rng.random(n) < p_ok
    return df, kinds


def _with_scipy_p(fn: Callable[[], Any]) -> float:
    """Return the seconds ``fn`` takes with the search's p-values from scipy's
    ``hypergeom.cdf`` (what the search used before its own summation)."""
    own = slices.fewer_correct_p
    slices.fewer_correct_p = lambda k1, n1, k, n: stats.hypergeom.cdf(k1, n, k, n1)
    try:
        return _timed(fn)[0]
    finally:
        slices.fewer_correct_p = own


def main(n: int = N, size: int = SIZE) -> int:
    """Print the properties throughput and the search times."""
    df, kinds = slice_table()
    t_search, found = _timed(lambda: slices.weak_segments(df, kinds, split="test"))
    t_singles, _ = _timed(lambda: slices.weak_segments(df, kinds, split="test", pairs=False))
    t_value, _ = _timed(lambda: slices.per_value(df, "num0", "numeric", split="test"))
    t_scipy = _with_scipy_p(lambda: slices.weak_segments(df, kinds, split="test"))
    t_again, _ = _timed(lambda: slices.weak_segments(df, kinds, split="test"))
    print(
        f"search 50,000 x 20 columns: {t_search:.2f} s first call, {t_again:.2f} s again "
        f"(singles and pairs, {found.tried:,} slices tried, {len(found.segments)} found, "
        f"first: {found.segments[0].text()}); with scipy's hypergeom.cdf for the p-values "
        f"(before) {t_scipy:.2f} s ({t_scipy / t_again:.1f}x); singles only {t_singles:.2f} s; "
        f"per_value of one numeric column {t_value:.3f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        t_write, paths = _timed(lambda: write_images(Path(tmp), n, size))
        t_decode, _ = _timed(lambda: _decode_only(paths))
        t_one, table = _timed(lambda: properties.measure_files(paths, workers=0))
        t_open, t_measure = _split_cost(paths)
        workers = min(4, os.cpu_count() or 1)
        t_many, _ = _timed(lambda: properties.measure_files(paths, workers=workers))
    assert table["readable"].all()
    print(
        f"properties of {n:,} {size}x{size} PNGs (written in {t_write:.1f} s): decode only "
        f"{t_decode:.1f} s ({n / t_decode:,.0f} img/s); properties in one process "
        f"{t_one:.1f} s ({n / t_one:,.0f} img/s, {t_one / t_decode:.2f}x decode); on "
        f"{workers} processes {t_many:.1f} s ({n / t_many:,.0f} img/s)"
    )
    print(
        f"of which: open + decode {t_open:.1f} s, the numpy measurements {t_measure:.1f} s "
        f"({t_measure / (t_open + t_measure):.0%}): measuring on the loader workers would save "
        f"{t_open:.1f} s once and add {t_measure:.1f} s to every evaluation"
    )
    return 0


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    sys.exit(main(*args))
