"""Min-ESS per second: the zoo's many-chain Gibbs kernel vs Pyro NUTS (with and without jit), and NumPyro NUTS when
installed, on the Normal–Gamma model with the same data.

    python benchmarks/gibbs_vs_nuts.py                       # n = 100 and n = 10,000
    python benchmarks/gibbs_vs_nuts.py --n 100 --gibbs-chains 1000 --nuts-samples 1000

ESS is ArviZ's bulk ESS pooled over chains, minimum over (mu, beta); time is wall time of the whole run (warmup
included; for NumPyro also its compilation, reported separately as a second, warm run). NumPyro and JAX come with
the bench extra (``pip install -e ".[bench]"``); without them the NumPyro rows are left out and a note says so.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _peers
import arviz as az
import numpy as np
import torch

from pyrozoo.inference.gibbs import run_gibbs
from pyrozoo.inference.mcmc import run_mcmc
from pyrozoo.models.normal_gamma import (
    GIBBS_KERNEL,
    normal_gamma_model,
    simulate_normal_gamma,
    sufficient_stats,
)


def min_ess(posterior: dict[str, np.ndarray]) -> float:
    idata = az.from_dict(posterior={k: posterior[k] for k in ("mu", "beta")})
    ess = az.ess(idata, method="bulk")
    return float(min(ess["mu"], ess["beta"]))


def bench_gibbs(ds, chains, samples, warmup, seed):
    t0 = time.perf_counter()
    res = run_gibbs(GIBBS_KERNEL, sufficient_stats(ds), num_samples=samples, warmup_steps=warmup,
                    num_chains=chains, seed=seed, progress=False)
    return min_ess(res.posterior), time.perf_counter() - t0


def bench_pyro_nuts(ds, chains, samples, warmup, seed, jit):
    t0 = time.perf_counter()
    res = run_mcmc(normal_gamma_model, ds.model_kwargs(), num_samples=samples, warmup_steps=warmup,
                   num_chains=chains, jit_compile=jit, seed=seed, progress=False)
    return min_ess(res.posterior), time.perf_counter() - t0


# the optional peer and the packages it needs (benchmarks/_peers.py)
PEERS = {"NumPyro NUTS": ("numpyro", "jax")}


def bench_numpyro(ds, chains, samples, warmup, seed):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd
    from numpyro.infer import MCMC, NUTS

    jax.config.update("jax_enable_x64", True)
    x = jnp.asarray(ds.observed["x"].cpu().numpy())

    def model(x):
        mu = numpyro.sample("mu", nd.Normal(0.0, 10.0))
        beta = numpyro.sample("beta", nd.Gamma(1.0, 1.0))
        with numpyro.plate("obs_id", x.shape[0]):
            numpyro.sample("x", nd.Normal(mu, 1.0 / jnp.sqrt(beta)), obs=x)

    out = []
    for _ in range(2):  # first run includes compilation
        t0 = time.perf_counter()
        mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=samples, num_chains=chains,
                    chain_method="sequential", progress_bar=False)
        mcmc.run(jax.random.PRNGKey(seed), x)
        post = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        out.append((min_ess(post), time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[100, 10_000])
    ap.add_argument("--gibbs-chains", type=int, default=1000)
    ap.add_argument("--gibbs-samples", type=int, default=1000)
    ap.add_argument("--nuts-chains", type=int, default=2)
    ap.add_argument("--nuts-samples", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--repeats", type=_peers.int_at_least(1), default=3, help="Gibbs repeats (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peers, notes = _peers.split_available(PEERS, PEERS)
    for note in notes:
        print(note, flush=True)

    rows = []
    for n in args.n:
        ds = simulate_normal_gamma(args.seed, n=n)
        gibbs = [bench_gibbs(ds, args.gibbs_chains, args.gibbs_samples, 100, args.seed + r)
                 for r in range(args.repeats)]
        g_rate = statistics.median(e / t for e, t in gibbs)
        g_ess, g_t = statistics.median(e for e, _ in gibbs), statistics.median(t for _, t in gibbs)
        rows.append((n, f"zoo Gibbs ({args.gibbs_chains} chains)", g_ess, g_t, g_rate))
        for jit in (False, True):
            ess, t = bench_pyro_nuts(ds, args.nuts_chains, args.nuts_samples, args.warmup, args.seed, jit)
            rows.append((n, f"Pyro NUTS{' jit' if jit else ''} ({args.nuts_chains} chains)", ess, t, ess / t))
        if "NumPyro NUTS" in peers:
            (e0, t0), (e1, t1) = bench_numpyro(ds, args.nuts_chains, args.nuts_samples, args.warmup, args.seed)
            rows.append((n, f"NumPyro NUTS ({args.nuts_chains} chains, incl. compile)", e0, t0, e0 / t0))
            rows.append((n, f"NumPyro NUTS ({args.nuts_chains} chains, warm)", e1, t1, e1 / t1))

    print("\n| n | sampler | min bulk ESS | wall s | min-ESS/s | Gibbs speed-up |")
    print("|---|---|---|---|---|---|")
    for n, name, ess, t, rate in rows:
        g = next(r for r in rows if r[0] == n and r[1].startswith("zoo Gibbs"))[4]
        print(f"| {n} | {name} | {ess:.0f} | {t:.2f} | {rate:,.0f} | {g / rate:,.0f}x |")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
