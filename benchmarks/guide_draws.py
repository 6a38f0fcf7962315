"""Seconds to draw S posterior draws from a fitted guide (the last step of every SVI fit): pyrozoo's
``draw_from_guide`` (one plated guide run per chunk; a guide other than Pyro's AutoGuides checked on its first chunk
by replaying three draws) against
one guide run per draw (pyrozoo's rule up to session 23) and Pyro's ``Predictive`` over the guide, sequential (its
default) and ``parallel=True``. Median of ``--repeats`` runs; one torch thread.

    python benchmarks/guide_draws.py
    python benchmarks/guide_draws.py --num-samples 1000 10000 100000 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import _peers
import pandas as pd
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Predictive
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

from pyrozoo.guides.normal_gamma import make_normal_gamma_guide
from pyrozoo.inference.guide_draws import _sequential, draw_from_guide
from pyrozoo.sweep.report import to_markdown


def regression(x=None, y=None):
    """Bayesian linear regression with a per-row random effect: global w (d), s; local z (n)."""
    w = pyro.sample("w", dist.Normal(torch.zeros(x.shape[1], dtype=x.dtype, device=x.device), 1.0).to_event(1))
    s = pyro.sample("s", dist.LogNormal(torch.zeros((), dtype=x.dtype, device=x.device), 1.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype, device=x.device), 1.0))
        pyro.sample("y", dist.Normal(x @ w + z, s), obs=y)


def cases(device: torch.device):
    """(name, guide, kwargs, latent names): guides set up on their model, at their initial parameters."""
    x = torch.randn(100, 5, device=device)
    kwargs = {"x": x, "y": torch.randn(100, device=device)}
    out = [("normal-gamma (2 scalars)", make_normal_gamma_guide(device=device),
            {"x": torch.randn(100, dtype=torch.float64, device=device)}, ["mu", "beta"])]
    for make in (AutoNormal, AutoMultivariateNormal):
        guide = make(regression)
        guide(**kwargs)
        out.append((f"{make.__name__}, regression (5 + 1 + 100)", guide, kwargs, ["w", "s", "z"]))
    return out


def seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=_peers.int_at_least(1), nargs="+", default=[1000, 10000],
                        help="draws S (default 1000 10000)")
    parser.add_argument("--repeats", type=_peers.int_at_least(1), default=3,
                        help="runs per figure; the median is shown (default 3)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--max-sequential", type=_peers.int_at_least(0), default=10000,
                        help="skip the one-run-per-draw methods above this S (default 10000)")
    args = parser.parse_args()
    device = _peers.check_device("--device", args.device, parser.error)  # before any work
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    rows = []
    for name, guide, kwargs, names in cases(device):
        for num in args.num_samples:
            def pyro_predictive(parallel: bool, num=num, guide=guide, kwargs=kwargs, names=names):
                return Predictive(guide, num_samples=num, return_sites=names, parallel=parallel)(**kwargs)

            methods = {"pyrozoo draw_from_guide": lambda num=num, guide=guide, kwargs=kwargs, names=names:
                       draw_from_guide(guide, kwargs, names, num),
                       "pyro Predictive parallel=True": lambda: pyro_predictive(True)}
            if num <= args.max_sequential:
                methods["one run per draw (pyrozoo before)"] = (
                    lambda num=num, guide=guide, kwargs=kwargs, names=names: _sequential(guide, kwargs, names, num))
                methods["pyro Predictive (sequential)"] = lambda: pyro_predictive(False)
            with torch.no_grad():
                figures = {m: seconds(fn, args.repeats) for m, fn in methods.items()}
            ours = figures["pyrozoo draw_from_guide"]
            for method, sec in figures.items():
                rows.append({"guide": name, "S": num, "method": method, "seconds": sec, "x ours": sec / ours})
    print(to_markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
