"""Neural-linear posterior: a small MLP's last hidden layer as features, conjugate Bayesian linear regression on top.

This is the model family Pinsler et al. (2019) use for their regression experiments: a deterministic feature map
phi(x) = [1, h_L(x)] (h_l = act(W_l h_{l-1} + c_l), h_0 = x) is learned on the labelled set, and the last layer is
the closed-form Normal–Gamma BLR of :mod:`pyrozoo.models.blr` on phi(x). With ``standardize=True`` the units are
centred and scaled by their mean and sd over the labelled rows, phi(x) = [1, (h_L(x) - m) / s], which gives the
BLR's unit prior scale the same meaning as on standardized raw inputs; unscaled ReLU units (|h| ~ 0.3) are shrunk
harder by the same prior. Everything the acquisitions need
(predictive, BALD's noise entropy, posterior draws, the closed-form weighted Fisher / Euclidean inner products) is
then the BLR's on the features, so ACS-FW keeps its closed forms with learned features.

Two ways to learn phi (``objective``), both full-batch Adam from a seeded initialization, with weight decay
``weight_decay`` on the hidden weights (scaled by 1 / N, a Gaussian prior on the weights):

* ``"mse"`` (default): train the MLP with a linear output head on the squared error, then drop the head;
* ``"marginal"``: maximize the BLR log marginal likelihood log p(y | Phi) (type-II ML on the features, as
  in deep kernel learning). With Lam_N = Phi^T Phi + I / s^2, mu_N = Lam_N^{-1} Phi^T y, a_N = a0 + N / 2,
  b_N = b0 + (y^T y - mu_N^T Lam_N mu_N) / 2:

      log p(y | Phi) = -N/2 log 2 pi - D log s - 1/2 log |Lam_N| + a0 log b0 - a_N log b_N + lgamma(a_N) - lgamma(a0)

Pilot on Boston (4 seeds, random acquisition, 20 + 100 labels, 30 ReLU units, 400 Adam steps): final test RMSE /
NLL 4.08 / 2.93 (mse), 4.25 / 3.51 (marginal), 4.32 / 3.53 (mse, standardized), 5.23 / 5.08 (marginal,
standardized). With 20-120 labels the stronger shrinkage of the unscaled units helps and the marginal-likelihood
features fit the few labels too closely (overconfident BLR), so ``"mse"`` without standardizing is the default. On
a smooth 2-D test function with 80 labels the ranking turns (see tests/active/test_neural_linear.py).

Depth: one hidden layer of 30 units by default. The reference code's UCI feature extractor has two
(``hidden=(30, 30)``; it also normalizes batches and trains on the BLR's predictive likelihood, neither done here).
With two layers the best final RMSE on each benchmark dataset is worse, and on Boston the ranking changes mainly
because BALD gets worse (benchmarks/RESULTS.md, issue 8), so the default stays at one.

Training recipe (``recipe``). ``"mlp"`` (default) is the above. ``"reference"`` follows the training of the paper's
reference code (github.com/rpinsler/active-bayesian-coresets, ``NeuralLinearTB``): two hidden layers of 30 units,
each Linear -> batch normalization -> ReLU, and the features are trained on the BLR head's own predictive
log-likelihood. For a minibatch B of the N labelled rows, with the Normal–Gamma posterior (a0 = b0 = 1, unit prior
scale) computed from all N rows' features Phi (so the gradient flows through the posterior too),

    loss(B) = -sum_{n in B} log St(y_n | 2 a_N, phi_n^T mu_N, b_N / a_N (1 + phi_n^T Lam_N^-1 phi_n))

:func:`blr_predictive_log_likelihood`. Adam (lr 1e-2, L2 weight decay ``weight_decay`` = 1 on the weight matrices and
batch-norm scales, coupled as in ``torch.optim.Adam``), cosine annealing of the learning rate to 1e-5 over the
epochs, shuffled minibatches of the largest power of two below N / 2 (drop last), batch statistics in training.
What differs from the reference code, and why: ``epochs`` defaults to 100, not 1000 (the benchmark refits 6,600
networks on one shared CPU core; with 20-120 labels that is still 200-300 Adam steps); the final features normalize
with the labelled set's batch statistics instead of exponential running averages (deterministic, the quantity the
running averages estimate); the linear layers before a batch norm have no bias (the normalization cancels it); the
BLR head keeps our constant feature [1, h(x)]. Benchmark (40 seeds, benchmarks/RESULTS.md, issue 8): the worse model
here, random acquisition's final RMSE higher on Boston, Concrete and the synthetic design and the test NLL higher for
every acquisition (the features fit the labels so closely that the head's noise estimate is about half the held-out
error), so ``"mlp"`` stays the default.

The features are re-learned from scratch at every refit (the active-learning loop refits after each batch). The
network is initialized and trained in float32 (:data:`TRAIN_DTYPE`, whatever torch's default dtype: a default of
float64 gave other weights and other results) on the inputs' device; the BLR on its features runs in float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from pyrozoo.active.base import PoolKernel, check_inputs
from pyrozoo.active.posteriors import BLRPoolPosterior, RegressionPosterior, check_fit_data, fit_names, named
from pyrozoo.errors import PyrozooError
from pyrozoo.models.blr import NOISE_PRIOR, check_design, check_prior
from pyrozoo.registry import no_effect_error, or_join
from pyrozoo.validation import (
    check_bool,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    check_same_index,
    check_seed,
)

OBJECTIVES = ("marginal", "mse")
RECIPES = ("mlp", "reference")
# recipe -> defaults of the arguments left as None: hidden sizes, Normal-Gamma a0, b0, weight decay
RECIPE_DEFAULTS = {"mlp": {"hidden": (30,), "a0": 2.0, "b0": 1.0, "weight_decay": 1.0},
                   "reference": {"hidden": (30, 30), "a0": 1.0, "b0": 1.0, "weight_decay": 1.0}}
# recipe -> the training options it reads, with their defaults (None in fit's signature: not given); an option
# given to the recipe that does not read it is refused (it would have no effect)
RECIPE_OPTIONS = {"mlp": {"objective": "mse", "steps": 400, "standardize": False}, "reference": {"epochs": 100}}
BN_EPS = 1e-5
TRAIN_DTYPE = torch.float32  # the network's dtype, whatever torch.get_default_dtype() says (the BLR is float64)
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


def blr_log_marginal(phi: torch.Tensor, y: torch.Tensor, *, prior_scale: float = 1.0, a0: float = 2.0,
                     b0: float = 1.0) -> torch.Tensor:
    """log p(y | Phi) of the Normal–Gamma BLR (unknown noise) in the module docstring; differentiable in ``phi``.
    ``phi`` (N, D), ``y`` (N,) (shapes checked, :func:`~pyrozoo.models.blr.check_design`)."""
    check_design(phi, y, x_name="phi")
    n, d = phi.shape
    lam = phi.T @ phi + torch.eye(d, dtype=phi.dtype, device=phi.device) / prior_scale**2
    chol = torch.linalg.cholesky(lam)
    proj = torch.cholesky_solve((phi.T @ y)[:, None], chol)[:, 0]  # mu_N
    a_n = a0 + 0.5 * n
    b_n = b0 + 0.5 * (y @ y - proj @ (phi.T @ y)).clamp(min=0)
    logdet = 2 * torch.log(torch.diagonal(chol)).sum()
    return (-0.5 * n * math.log(2 * math.pi) - d * math.log(prior_scale) - 0.5 * logdet + a0 * math.log(b0)
            - a_n * torch.log(b_n) + math.lgamma(a_n) - math.lgamma(a0))


def blr_predictive_log_likelihood(phi: torch.Tensor, y: torch.Tensor, phi_eval: torch.Tensor, y_eval: torch.Tensor,
                                  *, prior_scale: float = 1.0, a0: float = 1.0, b0: float = 1.0) -> torch.Tensor:
    """Pointwise log St(y_eval | 2 a_N, phi_eval^T mu_N, b_N / a_N (1 + phi_eval^T Lam_N^-1 phi_eval)) of the
    Normal–Gamma BLR fitted on (phi, y) (posterior as in :func:`blr_log_marginal`); differentiable in both feature
    matrices. The reference recipe's training loss is minus its sum over a minibatch. ``phi`` (N, D), ``y`` (N,),
    ``phi_eval`` (M, D), ``y_eval`` (M,) (shapes checked, :func:`~pyrozoo.models.blr.check_design`)."""
    check_design(phi, y, x_name="phi")
    check_design(phi_eval, y_eval, x_name="phi_eval", y_name="y_eval")
    n, d = phi.shape
    if phi_eval.shape[1] != d:
        raise PyrozooError(f"phi_eval: expected {d} columns (as phi), got shape {tuple(phi_eval.shape)}")
    lam = phi.T @ phi + torch.eye(d, dtype=phi.dtype, device=phi.device) / prior_scale**2
    chol = torch.linalg.cholesky(lam)
    mu = torch.cholesky_solve((phi.T @ y)[:, None], chol)[:, 0]
    a_n = a0 + 0.5 * n
    b_n = b0 + 0.5 * (y @ y - mu @ (phi.T @ y)).clamp(min=0)
    half = torch.linalg.solve_triangular(chol, phi_eval.T, upper=False)  # L^-1 phi_eval^T: |.|^2 = phi^T Lam^-1 phi
    scale = (b_n / a_n * (1 + (half * half).sum(0))).sqrt()
    return torch.distributions.StudentT(torch.full_like(scale, 2 * a_n), phi_eval @ mu, scale,
                                       validate_args=False).log_prob(y_eval)


def _reference_batch_size(n: int) -> int:
    """The reference code's minibatch size: N / 2 if N is a power of two, else the largest power of two below N / 2
    (at least 2, for the batch statistics; at most N)."""
    if n & (n - 1) == 0:
        size = n // 2
    else:
        size = 1
        while size * 2 < n / 2:
            size *= 2
    return min(n, max(2, size))


def _init_bn_layers(sizes: Sequence[int], generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """[W_1, gamma_1, beta_1, ...]: W as :func:`_init_layers` (no bias: batch norm removes it), gamma = 1, beta = 0."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_in, fan_out, generator=generator, dtype=TRAIN_DTYPE) * 2 - 1) * bound
        params += [w.to(device).requires_grad_(),
                   torch.ones(fan_out, dtype=TRAIN_DTYPE, device=device).requires_grad_(),
                   torch.zeros(fan_out, dtype=TRAIN_DTYPE, device=device).requires_grad_()]
    return params


def _hidden_bn(layers: Sequence[torch.Tensor], x: torch.Tensor, activation: str,
               stats: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
    """h_L(x) with h_l = act(BN(h_{l-1} W_l)): batch statistics of ``x`` when ``stats`` is None, else the given
    (mean, biased variance) per layer."""
    act = ACTIVATIONS[activation]
    h = x
    for i, (w, g, b) in enumerate(zip(layers[0::3], layers[1::3], layers[2::3], strict=True)):
        z = h @ w
        if stats is None:
            z = torch.nn.functional.batch_norm(z, None, None, g, b, training=True, eps=BN_EPS)
        else:
            z = torch.nn.functional.batch_norm(z, stats[i][0], stats[i][1], g, b, training=False, eps=BN_EPS)
        h = act(z)
    return h


def _bn_stats(layers: Sequence[torch.Tensor], x: torch.Tensor, activation: str
              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the mean and biased variance of the pre-normalization units over the rows of ``x``."""
    act, stats, h = ACTIVATIONS[activation], [], x
    with torch.no_grad():
        for w, g, b in zip(layers[0::3], layers[1::3], layers[2::3], strict=True):
            z = h @ w
            mean, var = z.mean(0), z.var(0, unbiased=False)
            stats.append((mean, var))
            h = act((z - mean) / torch.sqrt(var + BN_EPS) * g + b)
    return stats


def _train_mlp(x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int], activation: str, objective: str, steps: int,
               lr: float, weight_decay: float, standardize: bool, generator: torch.Generator, prior_scale: float,
               a0: float, b0: float) -> list[torch.Tensor]:
    """The default recipe (module docstring): full-batch Adam on the squared error of a linear head (``"mse"``) or
    on minus the BLR log marginal likelihood of the features (``"marginal"``); returns the hidden layers."""
    sizes = [x.shape[1], *hidden] + ([1] if objective == "mse" else [])
    params = _init_layers(sizes, generator, x.device)
    body = params[:-2] if objective == "mse" else params
    n = x.shape[0]
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        h = _hidden(body, x, activation)
        if objective == "marginal":
            phi = _design(h, *_standardize(h, standardize))
            loss = -blr_log_marginal(phi, y, prior_scale=prior_scale, a0=a0, b0=b0) / n
        else:
            pred = torch.addmm(params[-1], h, params[-2])[:, 0]
            loss = ((pred - y) ** 2).mean()
        if weight_decay > 0:
            loss = loss + 0.5 * weight_decay / n * sum((w * w).sum() for w in body[0::2])
        loss.backward()
        opt.step()
    return body


def _train_reference(x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int], activation: str, epochs: int,
                     lr: float, weight_decay: float, generator: torch.Generator, prior_scale: float, a0: float,
                     b0: float) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
    """The reference recipe (module docstring): returns the layers and the labelled set's batch statistics."""
    n = x.shape[0]
    params = _init_bn_layers([x.shape[1], *hidden], generator, x.device)
    decayed = params[0::3] + params[1::3]  # weight matrices and batch-norm scales, as the reference's "*.weight"
    opt = torch.optim.Adam([{"params": decayed, "weight_decay": weight_decay}, {"params": params[2::3]}], lr=lr,
                           foreach=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs, eta_min=1e-5)
    size = _reference_batch_size(n)
    ones = torch.ones(n, 1, dtype=x.dtype, device=x.device)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n - size + 1, size):  # drop the last incomplete minibatch
            idx = perm[start:start + size]
            opt.zero_grad(set_to_none=True)
            phi = torch.cat([ones, _hidden_bn(params, x, activation)], 1)
            phi_b = torch.cat([ones[:size], _hidden_bn(params, x[idx], activation)], 1)
            loss = -blr_predictive_log_likelihood(phi, y, phi_b, y[idx], prior_scale=prior_scale, a0=a0,
                                                  b0=b0).sum()
            loss.backward()
            opt.step()
        sched.step()
    return [p.detach() for p in params], _bn_stats(params, x, activation)


def _init_layers(sizes: Sequence[int], generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """PyTorch's default Linear initialization U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from ``generator`` (CPU)
    in :data:`TRAIN_DTYPE` so that a seed fixes the network on every device, whatever torch's default dtype."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(fan_in, fan_out, generator=generator, dtype=TRAIN_DTYPE) * 2 - 1) * bound
        c = (torch.rand(fan_out, generator=generator, dtype=TRAIN_DTYPE) * 2 - 1) * bound
        params += [w.to(device).requires_grad_(), c.to(device).requires_grad_()]
    return params


def _hidden(layers: Sequence[torch.Tensor], x: torch.Tensor, activation: str) -> torch.Tensor:
    """h_L(x) for layers [W_1, c_1, ..., W_L, c_L]."""
    act = ACTIVATIONS[activation]
    h = x
    for w, c in zip(layers[0::2], layers[1::2], strict=True):
        h = act(torch.addmm(c, h, w))
    return h


def _standardize(h: torch.Tensor, on: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and scale of each hidden unit over the labelled rows (scale 1 for a unit constant there); 0 and 1 when
    ``on`` is false."""
    if not on:
        return torch.zeros_like(h[0]), torch.ones_like(h[0])
    mean, sd = h.mean(0), h.std(0, unbiased=False)
    return mean, torch.where(sd > 1e-6, sd, torch.ones_like(sd))


def _design(h: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.ones(h.shape[0], 1, dtype=h.dtype, device=h.device), (h - mean) / scale], 1)


def check_recipe_options(recipe: str, given: Mapping[str, Any]) -> None:
    """Raise unless ``recipe`` is one of :data:`RECIPES` and reads every option given in ``given`` (name -> value;
    None counts as not given) that some recipe reads (:data:`RECIPE_OPTIONS`; the others are not checked here): one
    it would ignore is an error naming the option and the recipe, as :func:`~pyrozoo.models.bnn.fit_bnn` refuses
    options its posterior ignores. Likewise ``a0``/``b0`` (the Gamma(a0, b0) prior on the noise precision tau) given
    with a known ``noise`` > 0 (which fixes the BLR head's tau = 1 / noise^2) to the ``"mlp"`` recipe with objective
    ``"mse"``: only ``objective="marginal"`` and the ``"reference"`` recipe train on that prior, so there it would
    have no effect, as :meth:`BLRPoolPosterior.fit <pyrozoo.active.posteriors.BLRPoolPosterior.fit>` refuses it."""
    values = given
    given = [k for k, v in given.items() if v is not None]
    check_choice("recipe", recipe, RECIPES)
    read_by = {k: tuple(f"recipe={r!r}" for r, read in RECIPE_OPTIONS.items() if k in read)
               for opts in RECIPE_OPTIONS.values() for k in opts}
    unread = [k for k in given if k in read_by and k not in RECIPE_OPTIONS[recipe]]
    if unread:
        raise no_effect_error(unread, read_by, or_join, f"recipe={recipe!r}")
    noise, prior = values.get("noise"), {k: values[k] for k in NOISE_PRIOR if values.get(k) is not None}
    objective = RECIPE_OPTIONS["mlp"]["objective"] if values.get("objective") is None else values["objective"]
    if prior and recipe == "mlp" and objective == "mse" and _known_noise(noise):
        got = ", ".join(f"{k}={v!r}" for k, v in prior.items())
        it, them = ("it", "it") if len(prior) == 1 else ("they", "them")
        raise PyrozooError(f"{', '.join(prior)}: expected no prior on the noise precision with noise={float(noise):g} "
                           f"> 0 and recipe='mlp', objective='mse': the known noise fixes the BLR head's tau = 1 / "
                           f"noise^2 and the squared-error training does not read a0, b0 (only objective='marginal' "
                           f"and recipe='reference' train on the Gamma(a0, b0) prior), got {got}; {it} would have no "
                           f"effect (remove {them}, drop noise, or train with objective='marginal' or "
                           f"recipe='reference')")


def _known_noise(noise: Any) -> bool:
    """Whether ``noise`` is a finite number > 0 (a known noise sd); anything else is left to the fit's checks."""
    try:
        value = float(noise)
    except (TypeError, ValueError, RuntimeError):
        return False
    return math.isfinite(value) and value > 0


def _diverged(lr: float, how: str, what: str) -> PyrozooError:
    """The error for feature training that diverged (``what`` it left), suggesting a smaller ``lr``."""
    return PyrozooError(f"lr: the feature training diverged with lr={lr:g} ({how}): {what}; try a smaller lr "
                        f"(default 0.01)")


class NeuralLinearPosterior(RegressionPosterior):
    """BLR on learned MLP features; see the module docstring. Build with :meth:`fit`."""

    closed_forms = BLRPoolPosterior.closed_forms  # the BLR closed forms on the learned features

    def __init__(self, layers: list[torch.Tensor], activation: str, feature_mean: torch.Tensor,
                 feature_scale: torch.Tensor, blr: BLRPoolPosterior,
                 bn_stats: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.layers = [p.detach() for p in layers]
        self.activation = activation
        self.feature_mean, self.feature_scale = feature_mean.detach().double(), feature_scale.detach().double()
        self.blr = blr
        self.bn_stats = bn_stats  # per-layer (mean, variance) of the reference recipe's batch norms, else None

    @property
    def input_dim(self) -> int:
        return int(self.layers[0].shape[0])

    def _h(self, x: torch.Tensor) -> torch.Tensor:
        w0 = self.layers[0]
        x = check_inputs(self, x).to(dtype=w0.dtype, device=w0.device)
        if self.bn_stats is None:
            return _hidden(self.layers, x, self.activation)
        return _hidden_bn(self.layers, x, self.activation, self.bn_stats)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x) = [1, (h_L(x) - m) / s] (M, H + 1), float64."""
        with torch.no_grad():
            h = self._h(x).double()
        return _design(h, self.feature_mean, self.feature_scale)

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, *, recipe: str = "mlp", hidden: Sequence[int] | None = None,
            activation: str = "relu", objective: str | None = None, steps: int | None = None,
            epochs: int | None = None, lr: float = 0.01, weight_decay: float | None = None,
            standardize: bool | None = None, seed: int = 0, prior_scale: float = 1.0,
            a0: float | None = None, b0: float | None = None, noise: float = 0.0) -> NeuralLinearPosterior:
        """Learn the features on (x, y), then the closed-form BLR posterior on them (``noise > 0``: known noise sd,
        as in :func:`pyrozoo.models.blr.blr_posterior`). ``recipe`` (module docstring): ``"mlp"`` reads
        ``objective`` ("mse"), ``steps`` (400) and ``standardize`` (False); ``"reference"`` reads ``epochs`` (100)
        (:data:`RECIPE_OPTIONS`); left as None they take these defaults, and one given to the recipe that does not
        read it is an error (it would have no effect). ``hidden``, ``weight_decay``, ``a0``, ``b0`` left as None take
        the recipe's defaults (:data:`RECIPE_DEFAULTS`). With ``noise > 0`` the BLR head has no prior on the noise
        precision, so ``a0``/``b0`` are read only by the training of ``objective="marginal"`` and of the reference
        recipe; given to ``objective="mse"`` they are an error (:func:`check_recipe_options`).
        ``steps=0`` (``epochs=0`` for the reference recipe) trains nothing: the BLR is fitted on the features of the
        seeded random initialization (random features). ``x`` (N, D) and ``y`` (N,) may be tensors, NumPy arrays or
        lists (a DataFrame's column names become ``feature_names_in_``); they and every other argument are checked
        before any work (:func:`check_fit_data`). Training that diverges (too large an ``lr``: non-finite features,
        or a BLR precision on them that is not positive definite) is a :class:`PyrozooError` naming ``lr``, chained
        to torch's error where there is one."""
        names = fit_names(x)
        x, y = check_fit_data(x, y)
        given = {"objective": objective, "steps": steps, "epochs": epochs, "standardize": standardize}
        check_recipe_options(recipe, {**given, "a0": a0, "b0": b0, "noise": noise})
        own = RECIPE_OPTIONS[recipe]
        objective, steps, standardize = (own.get(k) if given[k] is None else given[k]
                                         for k in ("objective", "steps", "standardize"))
        epochs = own.get("epochs") if epochs is None else epochs
        defaults = RECIPE_DEFAULTS[recipe]
        hidden = defaults["hidden"] if hidden is None else hidden
        weight_decay = defaults["weight_decay"] if weight_decay is None else weight_decay
        a0 = defaults["a0"] if a0 is None else a0
        b0 = defaults["b0"] if b0 is None else b0
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise PyrozooError(f"hidden: expected a sequence of layer sizes, got {hidden!r}")
        hidden = [check_int("hidden", h, minimum=1) for h in hidden]
        if not hidden:
            raise PyrozooError("hidden: expected at least one hidden layer size, got none")
        check_choice("activation", activation, ACTIVATIONS)
        if recipe == "mlp":
            check_choice("objective", objective, OBJECTIVES)
            steps = check_int("steps", steps, minimum=0)
            check_bool("standardize", standardize)
        else:
            epochs = check_int("epochs", epochs, minimum=0)
        if recipe == "reference" and x.shape[0] < 2:
            raise PyrozooError(f"x: the reference recipe needs at least 2 labelled rows (batch statistics), got "
                               f"{x.shape[0]}")
        check_positive("lr", lr)
        check_nonnegative("weight_decay", weight_decay)
        seed = check_seed("seed", seed)  # torch.manual_seed: 2**64 overflowed with a raw ValueError
        check_prior(prior_scale, a0, b0, noise)

        xf, yf = x.to(TRAIN_DTYPE), y.to(TRAIN_DTYPE)  # float32 whatever torch's default dtype
        gen = torch.Generator().manual_seed(seed)
        how = f"recipe={recipe!r}" + (f", objective={objective!r}" if recipe == "mlp" else "")
        try:
            if recipe == "reference":
                body, stats = _train_reference(xf, yf, hidden, activation, epochs, lr, weight_decay, gen,
                                               prior_scale, a0, b0)
                standardize = False
            else:
                body, stats = _train_mlp(xf, yf, hidden, activation, objective, steps, lr, weight_decay, standardize,
                                         gen, prior_scale, a0, b0), None
            with torch.no_grad():
                h = _hidden(body, xf, activation) if stats is None else _hidden_bn(body, xf, activation, stats)
                h = h.double()
            if not bool(torch.isfinite(h).all()):
                raise _diverged(lr, how, "the learned features are not finite")
            mean, scale = _standardize(h, standardize)
            # a known noise (> 0) fixes the BLR's precision, so its Gamma(a0, b0) prior goes to training only (the
            # marginal objective and the reference recipe; check_recipe_options refused a0/b0 given to mse)
            noise_prior = {"a0": a0, "b0": b0} if float(noise) == 0 else {}
            blr = BLRPoolPosterior.fit(_design(h, mean, scale), y.to(torch.float64), prior_scale=prior_scale,
                                       noise=noise, **noise_prior)
        except torch.linalg.LinAlgError as exc:  # a Cholesky of the BLR precision on the features, in or after training
            raise _diverged(lr, how, "the BLR posterior precision on the learned features is not positive "
                                     "definite") from exc
        return named(cls(body, activation, mean, scale, blr, stats), names)

    # Everything else is the BLR's on the features.
    def predictive(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.blr.predictive(self.features(x))

    def expected_noise_entropy(self, x: torch.Tensor) -> torch.Tensor:
        return self.blr.expected_noise_entropy(self.features(x))

    def function_draws(self, x: torch.Tensor, num_samples: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.blr.function_draws(self.features(x), num_samples, generator)

    def log_predictive_density(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_same_index(x=x, y=y)  # rows are paired by position (the features lose x's index)
        return self.blr.log_predictive_density(self.features(x), y)

    def closed_form_embedding(self, x: torch.Tensor, inner_product: str) -> torch.Tensor | None:
        return self.blr.closed_form_embedding(self.features(x), inner_product)

    def closed_form_kernel(self, x: torch.Tensor, inner_product: str) -> PoolKernel | None:
        return self.blr.closed_form_kernel(self.features(x), inner_product)
