"""Seconds of PLCE's duplicate-column check (`pyrozoo.causal.inputs.check_no_duplicate_columns`, run on every
PLCE and EffectCurve fit) against the plain scan it replaced, which compares every pair of columns that share a
zero/sign pattern over all rows: O(n p^2) for all-positive covariates (ages, incomes). Both must refuse the same
pairs; the script checks that on matrices with hidden multiples before timing (benchmarks/RESULTS.md, "Duplicate
covariate columns"):

    python benchmarks/duplicate_columns.py
"""

from __future__ import annotations

import argparse
import time

import _peers
import numpy as np

from pyrozoo.causal.inputs import check_no_duplicate_columns
from pyrozoo.errors import PyrozooError


def pairwise_scan(X: np.ndarray) -> list[tuple[int, int]]:
    """The reference: for each column, the first earlier kept column of the same zero/sign pattern that it is an
    exact multiple of (|x_j - c x_k| <= 64 eps max|x_j|), comparing every such pair over all rows."""
    nonzero, negative = X != 0, X < 0
    first = nonzero.argmax(axis=0)
    flip = negative[first, np.arange(X.shape[1])]
    pattern = (nonzero.astype(np.int8) + (nonzero & (negative ^ flip)).astype(np.int8)).T
    groups: dict[bytes, list[int]] = {}
    pairs = []
    for j in range(X.shape[1]):
        kept = groups.setdefault(pattern[j].tobytes(), [])
        for k in kept:
            c = X[first[j], j] / X[first[k], k]
            if np.abs(X[:, j] - c * X[:, k]).max() <= 64 * np.finfo(np.float64).eps * np.abs(X[:, j]).max():
                pairs.append((j, k))
                break
        else:
            kept.append(j)
    return pairs


def refused(X: np.ndarray) -> str:
    try:
        check_no_duplicate_columns(X)
    except PyrozooError as exc:
        return str(exc)
    return ""


def median_seconds(f, X: np.ndarray, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(X)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    positive = _peers.int_at_least(1)
    parser.add_argument("--rows", type=positive, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--cols", type=positive, default=200)
    parser.add_argument("--repeats", type=positive, default=3, help="timed calls per method; the median is reported")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for trial in range(50):  # agreement first: the same pairs, in the same order, as the plain scan
        X = rng.uniform(0.5, 2.0, (300, 40))
        for j, k in rng.choice(40, size=(3, 2), replace=False):
            X[:, max(j, k)] = rng.choice([1.0, -2.5, 3.0]) * X[:, min(j, k)]
        expected = pairwise_scan(X)
        message = refused(X)
        found = message.count(" is ")
        assert expected and found == len(expected) and all(f"column {j} is" in message and f"column {k}" in message
                                                            for j, k in expected), (trial, expected, message)
    print("agreement: the same refused columns as the pairwise scan on 50 matrices with hidden multiples")
    print("| rows | cols | pairwise scan (s) | check_no_duplicate_columns (s) | ratio |")
    print("|---|---|---|---|---|")
    for n in args.rows:
        X = rng.uniform(0.5, 2.0, (n, args.cols))  # all positive: one sign pattern, the scan's worst usual case
        old = median_seconds(pairwise_scan, X, args.repeats)
        new = median_seconds(check_no_duplicate_columns, X, args.repeats)
        print(f"| {n} | {args.cols} | {old:.3f} | {new:.3f} | {old / new:.0f}x |")


if __name__ == "__main__":
    main()
