"""Probit BALD's E_w H[y | x, w] = E_{z ~ N(m, s)} H(Phi(z)): the zoo's rule against adaptive quadrature.

Until 2026-11-28 the zoo used 32-node Gauss-Hermite quadrature in the standardized variable (z - m) / sqrt(s), whose
nodes straddle the bump H(Phi(z)) (about 2 wide at z = 0) once sqrt(s) >~ 4; that rule is reproduced here as
``old``. ``new`` is :func:`pyrozoo.active.posteriors.probit_expected_entropy`. Reference: ``scipy.integrate.quad``.
Part 2 fits the probit Laplace posterior to 10, 20 and 50 random breast-cancer pool labels (prior_scale 1) and
compares each rule's BALD top 10 with the one from the quadrature reference.

    PYTHONPATH=. python benchmarks/probit_expected_entropy.py
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from scipy.integrate import quad
from scipy.special import log_ndtr

from pyrozoo.active.baselines import BALD
from pyrozoo.active.loop import load_problem
from pyrozoo.active.posteriors import ProbitPoolPosterior, probit_expected_entropy


def entropy(f: float) -> float:
    lp, lq = log_ndtr(f), log_ndtr(-f)
    return -(math.exp(lp) * lp + math.exp(lq) * lq)


def reference(m: float, s: float) -> float:
    sd = math.sqrt(s)
    a, b = max(m - 14 * sd, -40.0), min(m + 14 * sd, 40.0)
    c = -0.5 * math.log(2 * math.pi * s)
    return quad(lambda f: entropy(f) * math.exp(c - 0.5 * (f - m) ** 2 / s), a, b,
                points=[p for p in (0.0, m) if a < p < b] or None, limit=500, epsabs=0.0, epsrel=1e-12)[0]


def references(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.tensor([reference(a, b) for a, b in zip(m.tolist(), s.tolist(), strict=True)], dtype=torch.float64)


def old(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    t, w = np.polynomial.hermite_e.hermegauss(32)
    z = m[:, None] + s.sqrt()[:, None] * torch.as_tensor(t)
    lp, lq = torch.special.log_ndtr(z), torch.special.log_ndtr(-z)
    return -(lp.exp() * lp + lq.exp() * lq) @ torch.as_tensor(w / w.sum())


def top(scores: torch.Tensor) -> set[int]:
    return set(torch.sort(scores, descending=True, stable=True).indices[:10].tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, nargs="+", default=[10, 20, 50],
                        help="numbers of random breast-cancer labels to fit the probit posterior to")
    args = parser.parse_args()
    grid = [(m, s) for m in (-5.0, 0.0, 1.0, 3.0, 10.0) for s in (1e-6, 0.01, 1.0, 16.0, 100.0, 400.0, 1e4, 1e6)]
    m = torch.tensor([g[0] for g in grid], dtype=torch.float64)
    s = torch.tensor([g[1] for g in grid], dtype=torch.float64)
    ref = references(m, s)
    print("grid m in {-5, 0, 1, 3, 10} x s in {1e-6, 0.01, 1, 16, 100, 400, 1e4, 1e6}:")
    for name, got in (("old", old(m, s)), ("new", probit_expected_entropy(m, s))):
        err = (got - ref).abs()
        print(f"  {name}: max relative error {float((err / ref).max()):.2e}, max absolute error {float(err.max()):.2e}")
    for mi, si in ((0.0, 16.0), (0.0, 25.0), (1.0, 100.0), (0.0, 400.0), (3.0, 1e4)):
        mt, st = torch.tensor([mi], dtype=torch.float64), torch.tensor([si], dtype=torch.float64)
        print(f"  (m, s) = ({mi:g}, {si:g}): quad {reference(mi, si):.5f}, old {float(old(mt, st)[0]):.5f}, "
              f"new {float(probit_expected_entropy(mt, st)[0]):.5f}")
    problem = load_problem("breast-cancer", 0)
    x = problem.x_pool
    for n in args.labels:
        labelled = torch.as_tensor(np.random.default_rng(0).choice(len(problem.y_pool), n, replace=False))
        post = ProbitPoolPosterior.fit(x[labelled], problem.y_pool[labelled])
        mu, var = x @ post.mean, ((x @ post.cov) * x).sum(1)
        ref = references(mu, var)
        pred = post.predictive(x)[2]
        e_old, e_new = old(mu, var), post.expected_noise_entropy(x)
        print(f"breast cancer, {n} labels: pool s up to {float(var.max()):.0f}; E[H] max relative error old "
              f"{float(((e_old - ref).abs() / ref).max()):.2e}, new {float(((e_new - ref).abs() / ref).max()):.2e}; "
              f"BALD top 10 shared with the reference's: old {len(top(pred - ref) & top(pred - e_old))}, new "
              f"{len(top(pred - ref) & set(BALD().select(post, x, 10).indices.tolist()))}")


if __name__ == "__main__":
    main()
