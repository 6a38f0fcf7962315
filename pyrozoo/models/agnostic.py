"""Agnostic classifier: a representation that cannot encode a protected concept (Jia, Lansdall-Welfare & Cristianini
2018, built on the domain-adversarial network of Ganin et al. 2016).

A feature extractor ``G_f`` feeds a target classifier ``G_y`` and, through a gradient reversal layer (GRL), a
protected-concept classifier ``G_p``. The paper's eq. (1) is the saddle-point problem

    E(f, y, p) = (1 - alpha) mean_i L_y^i - alpha (mean_{target part} L_p^i + mean_{context part} L_p^i),
    (f, y) = argmin E,   p = argmax E,

with cross-entropy losses. As a Pyro model (maximizing the ELBO = minimizing the negative log-likelihood):

* ``y_i | x_i ~ Categorical(softmax(W_y G_f(x_i) + b_y))`` on the target-labelled rows, scaled by ``1 - alpha``;
* ``p_j | x_j ~ Categorical(softmax(W_p h(GRL_alpha(G_f(x_j))) + b_p))`` on the protected-labelled rows, with the
  per-row weights of eq. (1) (``pyrozoo.data.agnostic_tasks._protected_weights``).

The GRL is the identity forward and multiplies the gradient by ``-alpha`` backward, so ``G_f`` descends
``(1 - alpha) dL_y - alpha dL_p`` (eq. 2), the adversary ``(h, W_p, b_p)`` descends ``dL_p`` (eq. 3: same
argmax as ``alpha * L_p``; its scale is irrelevant to the saddle point and a fixed scale keeps the adversary
sharp at small alpha), and ``G_y`` descends ``(1 - alpha) dL_y``. At ``alpha = 0`` the extractor and ``G_y``
get exactly the gradients of a plain classifier.

``extractor_loss="confusion"`` (the default before the moment-matching scheme below) replaces the reversed gradient
by the confusion objective of Tzeng et al. (2015) / Alvi et al. (2018): ``G_f`` descends ``(1 - alpha) dL_y + alpha
dC`` with ``C = sum_j w_j (-(1/K) sum_k log G_p(G_f(x_j))_k)``, the cross-entropy of the (fixed) adversary against
the uniform distribution, while the adversary still learns ``L_p`` on detached features. Why: against a confident
adversary the reversed gradient ``-alpha dL_p`` vanishes (``dL_p / dlogits = softmax - onehot -> 0``), and the
extractor stalls with the concept intact; ``dC / dlogits = softmax - 1/K`` does not vanish. Both have the same fixed
point: a representation from which the best adversary predicts ``p`` at chance.

**Default scheme** (the issue-9 improvement pass; the paper's is selectable): ``G_f`` and ``G_y`` descend

    w_t L_y + w_a(alpha) * n * gap(G_f(x_context), p) - alpha_t L_p(GRL),
    w_t = 1,   w_a = min(alpha / (1 - alpha), cap)

(``target_weight="one"``, ``adversary_weight="odds"``, ``extractor_loss="moments+reversal"``): the trained adversary
still pushes ``G_f`` through the reversal layer at eq. 1's weight ``alpha_t``, and the moment term is added at the
odds weight (``extractor_loss="moments"`` drops the reversal term). The ratio of the two weights
is eq. 1's ``alpha : (1 - alpha)``; only the overall scale differs, so the target term is never shrunk to
``1 - alpha``. ``gap`` (:func:`moment_gap`) is the distance between the protected classes' first two moments of the
standardized features: the closed-form best response of a standardized linear / quadratic-discriminant
adversary. Its gradient vanishes once the features are agnostic (a trained adversary's confusion gradient does
not: it keeps moving the features, and at weights > 1 the target was no longer learned). The adversary ``G_p`` is
trained two-timescale on frozen features, as in the other schemes.

Bayesian vs point estimates: the two **output layers** ``W_y, b_y, W_p, b_p`` are Bayesian, with priors
``Normal(0, prior_scale)`` and a mean-field Normal guide (``AutoNormal``, trained with ``TraceMeanField_ELBO``:
analytic KL); ``G_f`` (convolutional for images, MLP for tables) and the adversary's hidden layer ``h`` are point
estimates (``pyro.module``). Predictions average the softmax over posterior draws of the heads.

Schedule: the paper raises alpha slowly during training; ``alpha_t = alpha * s(t / T)`` with ``s`` linear up to
``ramp`` then flat (default), the DANN schedule ``s(q) = 2 / (1 + exp(-10 q)) - 1``, or constant.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.poutine.messenger import Messenger
from torch import nn

from pyrozoo.config import RunConfig
from pyrozoo.data.agnostic_file import FILE_OPTIONS, read_agnostic_file
from pyrozoo.data.agnostic_tasks import cps1985_task, digits_task
from pyrozoo.data.dataset import Dataset
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.assemble import assemble_result
from pyrozoo.inference.device import RngStream, keeps_caller_state, resolve_device, same_rng_states, set_seed
from pyrozoo.inference.predictive import align_global_draws, latent_sites, trace_model
from pyrozoo.inference.progress import progress_bar
from pyrozoo.inference.result import Result
from pyrozoo.inference.svi import diverged_error, draw_from_guide
from pyrozoo.registry import SVI_SETTINGS, ZooModel, checked_config, register
from pyrozoo.validation import (
    as_tensor,
    check_choice,
    check_feature_names,
    check_finite,
    check_int,
    check_interval,
    check_keys,
    check_nonnegative,
    check_positive,
    check_probability,
    plate_subsample,
)

SCHEDULES = ("linear", "dann", "constant")
EXTRACTOR_LOSSES = ("reversal", "confusion", "moments", "moments+reversal")
TARGET_WEIGHTS = ("one_minus_alpha", "one")
ADVERSARY_WEIGHTS = ("alpha", "odds")
HEAD_SITES = ("w_y", "b_y", "w_p", "b_p")


# ------------------------------------------------------------------------------------ gradient reversal layer
class GradientReversal(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``-lam`` backward (Ganin et al. 2016)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """The gradient reversal layer ``R_lam``: ``R(x) = x``, ``dR/dx = -lam I``."""
    return GradientReversal.apply(x, float(lam))


# ------------------------------------------------------------------------------------------------- networks
def check_feature_dim(feature_dim: Any) -> int:
    """``feature_dim`` as an int >= 2: the extractors end in a LayerNorm without affine parameters,
    ``(z - mean(z)) / std(z)`` over the ``feature_dim`` features of a row, which is 0 for a single feature (the
    features would carry no information: chance accuracy that reads as perfectly fair)."""
    if isinstance(feature_dim, (int, np.integer)) and not isinstance(feature_dim, bool) and feature_dim < 2:
        raise PyrozooError(f"feature_dim: expected an integer >= 2 (the features are layer-normalized, and a "
                           f"LayerNorm over a single feature is always 0), got {feature_dim!r}")
    return check_int("feature_dim", feature_dim, minimum=2)


class ConvFeatures(nn.Module):
    """``G_f`` for small images: two conv3 + ReLU + 2x2 max-pool blocks (a scaled-down version of the paper's
    VGG-style extractor), then a linear layer to ``feature_dim`` and a LayerNorm without affine parameters.
    Normalized features matter: with unbounded ones (ReLU) the extractor can "win" the min-max game by inflating
    feature norms so that the adversary is confidently wrong, which destroys the target signal too; saturating
    ones (tanh) freeze the game once they saturate."""

    # one row's shape, (C, H, W) of the training images, when built by AgnosticNetwork.for_inputs (None: not known)
    input_shape: tuple[int, ...] | None = None

    def __init__(self, in_channels: int, image_size: int | tuple[int, int], feature_dim: int = 16, channels: int = 8):
        """``image_size``: the images' side, or their ``(H, W)``; each at least 4 (two 2x2 max-pools)."""
        super().__init__()
        feature_dim = check_feature_dim(feature_dim)
        height, width = (image_size, image_size) if isinstance(image_size, int) else map(int, image_size)
        if height < 4 or width < 4:  # the pools would leave no pixel (torch: "Output size is too small")
            raise PyrozooError(f"x: expected images of at least 4 x 4 pixels (the extractor pools twice by 2), got "
                               f"{height} x {width}")
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * channels * (height // 4) * (width // 4), feature_dim),
            nn.LayerNorm(feature_dim, elementwise_affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MLPFeatures(nn.Module):
    """``G_f`` for tables: Linear-ReLU-Linear-LayerNorm (normalized features, see :class:`ConvFeatures`)."""

    # one row's shape, (F,), when built by AgnosticNetwork.for_inputs (None: not known)
    input_shape: tuple[int, ...] | None = None

    def __init__(self, in_features: int, feature_dim: int = 16, hidden: int = 32):
        super().__init__()
        feature_dim = check_feature_dim(feature_dim)
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim),
                                  nn.LayerNorm(feature_dim, elementwise_affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AgnosticNetwork(nn.Module):
    """The point-estimated parts: the extractor ``G_f`` and the adversary's hidden layer ``h``."""

    def __init__(self, extractor: nn.Module, feature_dim: int, adversary_hidden: int = 32, adversary_layers: int = 1,
                 standardize: bool = False, input_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.extractor = extractor
        layers: list[nn.Module] = [nn.BatchNorm1d(feature_dim, affine=False)] if standardize else []
        width = feature_dim
        for _ in range(adversary_layers):
            layers += [nn.Linear(width, adversary_hidden), nn.ReLU()]
            width = adversary_hidden
        self.adversary = nn.Sequential(*layers)
        self.feature_dim = int(feature_dim)
        self.adversary_hidden = int(adversary_hidden) if adversary_layers else int(feature_dim)
        self.adversary_layers = int(adversary_layers)
        # what it was built with, so that fit_agnostic can refuse options that ask for another network
        self.hidden, self.standardize = int(adversary_hidden), bool(standardize)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)  # one row's shape
        # True for the untrained network attach_network puts on a dataset: fit_agnostic trains a copy of it
        self.template = False
        # the training DataFrame's column names (fitted_network: the dataset's meta["feature_names"]), or None
        self.feature_names: list[str] | None = None
        # the dataset's meta["x_mean"] / meta["x_scale"] (fitted_network), float64 tensors, or None: predict_proba
        # standardizes a DataFrame of raw rows with them
        self.input_mean: torch.Tensor | None = None
        self.input_scale: torch.Tensor | None = None

    @classmethod
    def for_inputs(cls, x: torch.Tensor, *, feature_dim: int = 16, hidden: int = 32,
                   adversary_layers: int = 1, standardize: bool = False) -> AgnosticNetwork:
        """Convolutional extractor for ``(N, C, H, W)`` images, MLP for ``(N, F)`` tables; the adversary's body
        is ``adversary_layers`` Linear-ReLU layers of width ``hidden`` (0: a linear adversary). The network and
        its extractor record one row's shape (``input_shape``), which :func:`predict_proba` and
        :func:`~pyrozoo.evaluation.saliency.feature_saliency` check inputs against."""
        if x.dim() == 4:
            extractor = ConvFeatures(x.shape[1], (x.shape[-2], x.shape[-1]), feature_dim)  # H x W, square or not
        elif x.dim() == 2:
            extractor = MLPFeatures(x.shape[1], feature_dim, hidden)
        else:
            raise PyrozooError(f"x: expected images (N, C, H, W) or a table (N, F), got shape {tuple(x.shape)}")
        extractor.input_shape = tuple(int(d) for d in x.shape[1:])
        return cls(extractor, feature_dim, hidden, adversary_layers, standardize,
                   input_shape=tuple(x.shape[1:])).to(device=x.device)

    def reset_adversary(self) -> None:
        """Re-draw the adversary body's weights (a fresh adversary; seed torch's RNG first)."""
        for m in self.adversary.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw every layer's initial weights from torch's RNG (seed it first)."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x)


# ------------------------------------------------------------------------------------------------- schedule
@dataclass
class AlphaSchedule:
    """``alpha_t = alpha * s(progress)``; ``float(schedule)`` is the current value. ``progress`` in [0, 1] is set by
    the training loop (1 after training, so the fitted model is evaluated at the target alpha)."""

    alpha: float
    kind: str = "linear"
    ramp: float = 0.5
    progress: float = 1.0
    hold: bool = False  # True: alpha_t = 0 (the adversary's warm-up)

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        check_choice("schedule", self.kind, SCHEDULES)
        check_probability("ramp", self.ramp, open_interval=False)
        if self.ramp == 0 and self.kind == "linear":
            self.kind = "constant"

    def value(self, progress: float | None = None) -> float:
        if self.hold and progress is None:
            return 0.0
        q = self.progress if progress is None else float(progress)
        q = min(max(q, 0.0), 1.0)
        if self.kind == "constant":
            s = 1.0
        elif self.kind == "linear":
            s = min(1.0, q / self.ramp)
        else:  # DANN: 2 / (1 + exp(-10 q)) - 1
            s = 2.0 / (1.0 + math.exp(-10.0 * q)) - 1.0
        return self.alpha * s

    def __float__(self) -> float:
        return self.value()


def target_weight_value(target_weight: Any, alpha: float) -> float:
    """The target term's weight ``w_t``: ``1 - alpha`` for ``"one_minus_alpha"`` (eq. 1), 1 for ``"one"``, or the
    given number in (0, 1] whatever alpha is (the adversarial term keeps weight alpha)."""
    if isinstance(target_weight, str):
        check_choice("target_weight", target_weight, TARGET_WEIGHTS)
        return 1.0 if target_weight == "one" else 1.0 - alpha
    return check_interval("target_weight", target_weight, 0.0, 1.0, low_open=True,
                          hint=" (or 'one_minus_alpha', 'one')")


def adversary_weight_value(adversary_weight: str, alpha: float | AlphaSchedule, cap: float = 10.0) -> float:
    """The adversarial term's weight ``w_a`` at the schedule's current point: ``"alpha"`` gives ``alpha_t`` (eq. 1);
    ``"odds"`` gives ``s_t * min(alpha / (1 - alpha), cap)`` (``cap`` at alpha = 1), where ``s_t = alpha_t / alpha``
    is the schedule's ramp. With ``target_weight="one"`` the odds weight keeps eq. 1's ratio of the two terms,
    ``alpha : (1 - alpha)``, without shrinking the target term."""
    check_choice("adversary_weight", adversary_weight, ADVERSARY_WEIGHTS)
    a_t = float(alpha)
    if adversary_weight == "alpha":
        return a_t
    base = check_alpha(alpha)
    if base == 0.0:
        return 0.0
    odds = cap if base >= 1.0 else min(base / (1.0 - base), cap)
    return odds * a_t / base


def check_alpha(alpha: Any) -> float:
    """Raise unless ``alpha`` is a number in [0, 1]."""
    if isinstance(alpha, AlphaSchedule):
        return alpha.alpha
    return check_interval("alpha", alpha, 0.0, 1.0, hint=" (the target/protected trade-off)")


# ---------------------------------------------------------------------------------------------- Pyro model
def _linear(z: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Logits ``z W^T + b`` for features ``(N, D)`` and weights ``(..., C, D)``, ``(..., C)``: ``(..., N, C)``. The
    leading dims ``...`` of head draws are lined up against the data plate (dim -1 of the logits' batch) by
    :func:`~pyrozoo.inference.predictive.align_global_draws`: ``(S, 1, C, D)`` (an outer vectorized plate) and
    ``(S, C, D)`` (``Predictive(parallel=True)``) both give ``(S, N, C)``."""
    w, b = align_global_draws(w, 2), align_global_draws(b, 1)
    return torch.einsum("...nd,...cd->...nc", z, w) + b.unsqueeze(-2)


def agnostic_model(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    p: torch.Tensor | None = None,
    *,
    net: AgnosticNetwork,
    target_idx: torch.Tensor,
    protected_idx: torch.Tensor,
    protected_weight: torch.Tensor | None = None,
    num_classes: int = 2,
    num_protected: int = 2,
    alpha: float | AlphaSchedule = 0.5,
    prior_scale: float = 1.0,
    batch_size: int | None = None,
    protected_features: torch.Tensor | None = None,
    extractor_loss: str = "reversal",
    target_weight: str | float = "one_minus_alpha",
    adversary_weight: str = "alpha",
    max_adversary_weight: float = 10.0,
) -> None:
    """The Pyro model (see the module docstring). ``y`` (target labels of the rows ``target_idx``) and ``p``
    (protected labels of the rows ``protected_idx``) are observed when given, drawn otherwise. ``batch_size``
    subsamples both plates (the likelihood is rescaled by Pyro): each plate draws ``min(batch_size, rows)`` of its
    rows, so a plate with fewer rows than ``batch_size`` is used whole; ``None`` or 0: every row (full batch).

    ``protected_features`` (frozen ``G_f`` outputs of the protected rows, ``(n_p, D)``) turns the model into the
    adversary's own problem (eq. 3 with ``G_f`` fixed): the target plate is left out and the protected plate reads
    the given features, so only ``h, W_p, b_p`` get gradients.

    ``target_weight`` is the weight of the target term: ``"one_minus_alpha"`` (eq. 1), ``"one"`` (weight 1 at every
    alpha, so only the adversarial term grows with alpha) or a number in (0, 1] (a fixed weight).
    ``adversary_weight`` is the weight of the adversarial term (the GRL's lambda, or the confusion factor's scale):
    ``"alpha"`` (eq. 1) or ``"odds"`` (``alpha / (1 - alpha)``, capped at ``max_adversary_weight``); see
    :func:`adversary_weight_value`."""
    w_t = target_weight_value(target_weight, float(alpha))
    a = adversary_weight_value(adversary_weight, alpha, max_adversary_weight)
    pyro.module("agnostic_net", net)
    ref = x
    D, H = net.feature_dim, net.adversary_hidden
    s = torch.as_tensor(prior_scale, dtype=ref.dtype, device=ref.device)
    zero = torch.zeros((), dtype=ref.dtype, device=ref.device)
    w_y = pyro.sample("w_y", dist.Normal(zero, s).expand([num_classes, D]).to_event(2))
    b_y = pyro.sample("b_y", dist.Normal(zero, s).expand([num_classes]).to_event(1))
    w_p = pyro.sample("w_p", dist.Normal(zero, s).expand([num_protected, H]).to_event(2))
    b_p = pyro.sample("b_p", dist.Normal(zero, s).expand([num_protected]).to_event(1))

    if protected_features is None:
        n_t = target_idx.shape[0]
        batch_t = plate_subsample("batch_size", batch_size, n_t)
        with pyro.plate("target_id", n_t, subsample_size=batch_t, device=ref.device) as i:
            z = net.extractor(x[target_idx[i]])
            # Pyro scales must be > 0: a target weight of 0 (alpha = 1 under eq. 1) masks the term out
            with poutine.scale(scale=w_t) if w_t > 0 else poutine.mask(mask=False):
                pyro.sample("y", dist.Categorical(logits=_linear(z, w_y, b_y)), obs=None if y is None else y[i])

    n_p = protected_idx.shape[0]
    if n_p == 0:
        return
    weight = protected_weight if protected_weight is not None else torch.ones(n_p, dtype=ref.dtype, device=ref.device)
    if extractor_loss.startswith("moments") and protected_features is None and p is not None and a > 0:
        # closed-form best response of a standardized linear/quadratic adversary (all protected rows at once)
        gap = moment_gap(net.extractor(x[protected_idx]), p, weight)
        pyro.factor("moments", -a * target_idx.shape[0] * gap)
    batch_p = plate_subsample("batch_size", batch_size, n_p)
    with pyro.plate("protected_id", n_p, subsample_size=batch_p, device=ref.device) as j:
        if protected_features is not None:
            h = net.adversary(protected_features[j])
        elif extractor_loss == "moments":
            h = net.adversary(net.extractor(x[protected_idx[j]]).detach())
        elif extractor_loss == "moments+reversal":  # the moment gap above plus the GRL at eq. 1's weight alpha_t
            h = net.adversary(grad_reverse(net.extractor(x[protected_idx[j]]), float(alpha)))
        elif extractor_loss == "reversal":
            h = net.adversary(grad_reverse(net.extractor(x[protected_idx[j]]), a))
        else:  # confusion: the adversary learns from detached features, the extractor from the factor below
            z_p = net.extractor(x[protected_idx[j]])
            h = net.adversary(z_p.detach())
            if a > 0:  # the adversary's weights are held fixed in this term (detached): only G_f is pushed
                frozen = {k: v.detach() for k, v in net.adversary.named_parameters()}
                h_f = torch.func.functional_call(net.adversary, frozen, (z_p,))
                logp = torch.log_softmax(_linear(h_f, w_p.detach(), b_p.detach()), -1)
                pyro.factor("confusion", a * weight[j] * logp.mean(-1))
        with poutine.scale(scale=weight[j]):
            pyro.sample("p", dist.Categorical(logits=_linear(h, w_p, b_p)), obs=None if p is None else p[j])


def moment_gap(z: torch.Tensor, p: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """How far the protected classes' feature distributions are apart in their first two moments, on features
    standardized over all rows (as the fresh probes see them):

        gap = sum_k pi_k [ ||m_k - m||^2 + ||C_k - C||_F^2 / D ],

    ``m_k, C_k`` the weighted mean and covariance of class ``k``, ``m, C`` the pooled ones, ``pi_k`` the class
    shares. ``gap = 0`` iff every class has the pooled mean and covariance: then no linear probe (and no quadratic
    discriminant) separates the classes. Its gradient vanishes at that point, so unlike a trained adversary it
    does not keep pushing a representation that is already agnostic."""
    w = torch.ones(z.shape[0], dtype=z.dtype, device=z.device) if weight is None else weight.to(z.dtype)
    w = w / w.sum()
    mean = (w[:, None] * z).sum(0)
    sd = ((w[:, None] * (z - mean) ** 2).sum(0) + 1e-5).sqrt()
    u = (z - mean) / sd
    pooled = (w[:, None] * u).T @ u
    gap = z.new_zeros(())
    for k in torch.unique(p):
        wk = w * (p == k).to(z.dtype)
        share = wk.sum()
        if share <= 0:
            continue
        wk = wk / share
        mk = (wk[:, None] * u).sum(0)
        ck = (wk[:, None] * (u - mk)).T @ (u - mk)
        gap = gap + share * ((mk ** 2).sum() + ((ck - pooled) ** 2).sum() / z.shape[1])
    return gap


def make_agnostic_guide(model: Any = agnostic_model, init_scale: float = 0.05) -> AutoNormal:
    """Mean-field Normal guide over the Bayesian heads ``w_y, b_y, w_p, b_p`` (the only latent sites)."""
    return AutoNormal(model, init_scale=init_scale)


# --------------------------------------------------------------------------------------- predictions, loglik
def _flat_heads(posterior: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out = {}
    for k in HEAD_SITES:
        v = torch.as_tensor(np.asarray(posterior[k]) if not isinstance(posterior[k], torch.Tensor) else posterior[k])
        out[k] = v.reshape((-1,) + tuple(v.shape[2:])).to(device=device, dtype=dtype)
    return out


@torch.no_grad()
def head_logits(net: AgnosticNetwork, x: torch.Tensor, heads: dict[str, torch.Tensor], which: str = "y",
                chunk: int = 4096) -> torch.Tensor:
    """Logits ``(S, N, classes)`` of the target (``which='y'``) or protected (``'p'``) head at S head draws
    (``N = 0`` rows give an empty ``(S, 0, classes)``)."""
    w, b = heads[f"w_{which}"], heads[f"b_{which}"]
    if x.shape[0] == 0:  # zero rows: an empty (S, 0, classes), as the BNN's predictions give empty tensors
        return b.new_zeros((b.shape[0], 0, b.shape[-1]))
    out = []
    for start in range(0, x.shape[0], chunk):
        z = net.extractor(x[start : start + chunk])
        if which == "p":
            z = net.adversary(z)
        out.append(torch.einsum("nd,scd->snc", z, w) + b[:, None, :])
    return torch.cat(out, dim=1)


NET_PREFIX = "agnostic_net$$$"  # pyro.module's name for the network's parameters (and, in a Result, its buffers)


def _network_of(dataset: Dataset) -> AgnosticNetwork:
    """``dataset.inputs["net"]``, or a :class:`PyrozooError` saying how to attach one."""
    if not isinstance(dataset, Dataset):
        raise PyrozooError(f"data: expected the Dataset the result was fitted on, got {type(dataset).__name__}")
    net = dataset.inputs.get("net")
    if not isinstance(net, AgnosticNetwork):
        raise PyrozooError("dataset: expected an AgnosticNetwork in inputs['net'] (use load_digits_task or "
                           f"attach_network(data)), got {type(net).__name__}")
    return net


def fitted_network(result: Result, dataset: Dataset) -> AgnosticNetwork:
    """The network ``result`` fitted: a copy of ``dataset``'s (untrained) network holding the result's parameters
    and buffers (``result.params``), in eval mode, on the device of ``dataset``'s inputs. :func:`fit_agnostic`
    trains a copy and leaves the dataset's network as it is, so every Result of one dataset keeps its own fit. Its
    ``feature_names`` are the dataset's ``meta["feature_names"]`` (checked against a DataFrame by
    :func:`predict_proba`), and its ``input_mean`` / ``input_scale`` the dataset's ``meta["x_mean"]`` /
    ``meta["x_scale"]`` when it has both (one per feature column; :func:`predict_proba` standardizes a DataFrame of
    raw rows with them)."""
    template = _network_of(dataset)
    if not isinstance(result, Result):
        raise PyrozooError(f"result: expected the Result of fit_agnostic, got {type(result).__name__}")
    state = {k[len(NET_PREFIX):]: torch.as_tensor(v) for k, v in result.params.items() if k.startswith(NET_PREFIX)}
    if not state:
        raise PyrozooError("result: expected the fitted network's parameters in result.params (a Result of "
                           "fit_agnostic), found none")
    net = copy.deepcopy(template)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise PyrozooError(f"result: its fitted network does not match the dataset's network ({first}); score a "
                           f"Result with the dataset it was fitted on") from None
    net.template = False
    names = dataset.meta.get("feature_names")  # predict_proba refuses a DataFrame with other columns or another order
    net.feature_names = None if names is None else [str(c) for c in names]
    net = net.to(dataset.inputs["x"].device).eval()
    if "x_mean" in dataset.meta and "x_scale" in dataset.meta:  # the loaders' training moments (--data, cps1985)
        width = tuple(dataset.inputs["x"].shape[1:])
        moments = []
        for key in ("x_mean", "x_scale"):
            value = torch.as_tensor(np.asarray(dataset.meta[key], dtype=np.float64), device=dataset.inputs["x"].device)
            if len(width) != 1 or tuple(value.shape) != width:
                raise PyrozooError(f"data: expected meta[{key!r}] with one value per feature column, shape {width}, "
                                   f"got shape {tuple(value.shape)}")
            moments.append(value)
        net.input_mean, net.input_scale = moments
    return net


def check_input_shape(name: str, x: torch.Tensor, row: tuple[int, ...] | None) -> None:
    """Refuse ``x`` unless it is rows ``(N, *row)``, shaped like the network's training inputs (``row``: one row's
    shape, :attr:`AgnosticNetwork.input_shape`; ``None``: not known, nothing is checked). Used by
    :func:`predict_proba` and :func:`~pyrozoo.evaluation.saliency.feature_saliency`."""
    if row is None:
        return
    if tuple(x.shape) == row:
        raise PyrozooError(f"{name}: expected rows shaped (N, {', '.join(map(str, row))}), got one row of shape "
                           f"{tuple(x.shape)}; pass x[None]{' (or x.reshape(1, -1))' if len(row) == 1 else ''} "
                           f"for a single row")
    if tuple(x.shape[1:]) != row:
        raise PyrozooError(f"{name}: expected rows shaped (N, {', '.join(map(str, row))}) like the training inputs, "
                           f"got shape {tuple(x.shape)}")


def _check_rows(name: str, x: Any, net: AgnosticNetwork) -> torch.Tensor:
    """``x`` as a finite tensor of rows shaped like the network's inputs, on its device. A DataFrame ``x`` must have
    the network's ``feature_names`` (the training DataFrame's columns), in that order: columns are read by
    position, so permuted or other columns would silently be the wrong inputs. A DataFrame is a table of raw rows:
    when the network carries the dataset's training moments (``input_mean``, ``input_scale``) it is standardized
    with them, ``(x - x_mean) / x_scale`` (in float64, then cast, as the loaders do); arrays and tensors are taken
    in the network's units and left as they are."""
    import pandas as pd

    check_feature_names(x, getattr(net, "feature_names", None), name=name)
    ref = next(net.parameters())
    mean, scale = getattr(net, "input_mean", None), getattr(net, "input_scale", None)
    raw = isinstance(x, pd.DataFrame) and mean is not None and scale is not None
    # arrays and DataFrames as well as tensors; raw rows in float64 until they are standardized
    x = as_tensor(name, x, dtype=torch.float64 if raw else ref.dtype, device=ref.device)
    check_input_shape(name, x, getattr(net, "input_shape", None))
    if x.dim() < 2:
        raise PyrozooError(f"{name}: expected an array of rows (N, features...), got shape {tuple(x.shape)}")
    check_finite(name, x)
    if raw:
        x = ((x - mean.to(x.device)) / scale.to(x.device)).to(ref.dtype)
    return x


@torch.no_grad()
def predict_proba(net: AgnosticNetwork | Result, x: Any, posterior: dict[str, Any] | None = None, which: str = "y",
                  *, data: Dataset | None = None) -> torch.Tensor:
    """Posterior-predictive class probabilities ``(N, classes)``: the softmax averaged over head draws,

        P(y = k | x) = (1/S) sum_s softmax(W_y^s G_f(x) + b_y^s)_k      (``which="p"``: the adversary's head),

    column ``k`` being class ``data.meta["y_classes"][k]`` (``"p_classes"`` for ``which="p"``).

    ``predict_proba(result, x, data=data)`` scores with the result's own fitted network (:func:`fitted_network`)
    and head draws; ``predict_proba(net, x, posterior)`` with a given network and draws (``result.posterior``).
    ``x``: rows shaped like the training inputs, finite; zero rows give an empty ``(0, classes)``. A DataFrame
    ``x`` must have the training DataFrame's columns (``data.meta["feature_names"]``) in that order; arrays and
    tensors are read by position.

    Units: a DataFrame ``x`` is a table of raw rows with the feature columns. When ``data.meta`` holds
    ``"x_mean"`` and ``"x_scale"`` (one per feature column: the ``--data`` reader and ``cps1985`` record the
    training rows' moments they standardized with; cps1985's dummy columns have 0 and 1), it is standardized with
    them, ``(x - x_mean) / x_scale``, after the column check, so ``predict_proba(result, df[features], data=data)``
    scores the file's own rows. Arrays and tensors are taken in the network's units (as ``data``'s own inputs and
    split tensors are) and are not transformed. A dataset of :func:`make_agnostic_data` records no moments: its
    DataFrames are used as given (the user's units). The same holds for ``predict_proba(net, x, posterior)`` with
    ``net = fitted_network(result, data)``, which carries ``data``'s moments."""
    check_choice("which", which, ("y", "p"))
    if isinstance(net, Result):
        if posterior is not None:
            raise PyrozooError("posterior: with a Result the head draws are its own (result.posterior); leave "
                               "posterior out")
        if data is None:
            raise PyrozooError("data: expected the Dataset the result was fitted on (its network's architecture), "
                               "got none: predict_proba(result, x, data=data)")
        net, posterior = fitted_network(net, data), net.posterior
    elif data is not None:
        raise PyrozooError("data: applies only with a Result (predict_proba(result, x, data=data)); with a network "
                           "it would have no effect (remove it)")
    if not isinstance(net, AgnosticNetwork):
        raise PyrozooError(f"net: expected a Result of fit_agnostic or an AgnosticNetwork, got {type(net).__name__}")
    if getattr(net, "template", False):
        raise PyrozooError("net: this is the dataset's untrained network (attach_network); fit_agnostic trains a "
                           "copy and leaves it as it is. Use the Result: predict_proba(result, x, data=data), or "
                           "fitted_network(result, data)")
    if not isinstance(posterior, Mapping) or any(k not in posterior for k in HEAD_SITES):
        raise PyrozooError(f"posterior: expected draws of the heads {', '.join(HEAD_SITES)} (result.posterior), got "
                           f"{type(posterior).__name__ if not isinstance(posterior, Mapping) else sorted(posterior)}")
    x = _check_rows("x", x, net)
    ref = next(net.parameters())
    heads = _flat_heads(posterior, ref.device, ref.dtype)
    return head_logits(net, x, heads, which).softmax(-1).mean(0)


@torch.no_grad()
def pointwise_log_likelihood(posterior: dict[str, torch.Tensor], model_kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
    """``log p(y_i | heads_s)`` on the target rows and ``log p(p_j | heads_s)`` on the protected rows, unweighted
    (no alpha, no eq.-1 weights), shaped ``(chain, draw, rows)``; the extractor is evaluated once."""
    x, net = model_kwargs["x"], model_kwargs["net"]
    first = posterior["w_y"]
    chains, draws = first.shape[:2]
    heads = _flat_heads(posterior, x.device, x.dtype)
    out = {}
    for which, idx_key in (("y", "target_idx"), ("p", "protected_idx")):
        obs = model_kwargs.get(which)
        if obs is None or model_kwargs[idx_key].shape[0] == 0:
            continue
        logits = head_logits(net, x[model_kwargs[idx_key]], heads, which)
        ll = dist.Categorical(logits=logits).log_prob(obs)
        out[which] = ll.reshape(chains, draws, -1).cpu().numpy()
    return out


# ----------------------------------------------------------------------------------------------- entry glue
MODEL_OPTIONS = {"alpha": 1.0, "schedule": "linear", "ramp": 0.5, "prior_scale": 1.0, "feature_dim": 16,
                 "hidden": 32, "batch_size": 128, "optimizer": "sgd", "momentum": 0.5, "lr_decay": 0.1,
                 "adv_steps": 5, "adv_lr": 0.01, "adv_layers": 1, "adv_reset": 100, "adv_retrain": 50, "clip_norm": 1.0,
                 "adv_weight_decay": 0.0, "adv_standardize": True, "extractor_loss": "moments+reversal",
                 "target_weight": "one", "adversary_warmup": 0, "adversary_weight": "odds",
                 "max_adversary_weight": 100.0}
# digits_task's n_context (the number of blank context images) is not among them: it applies only to
# context="blank", a Python argument of digits_task; the entry's context part is the digit pool
DIGITS_OPTIONS = {"train_corr": 0.95, "background": 0.5, "noise": 0.1, "protected_on_target": False,
                  "context_copies": 2}


# options that only the two-timescale adversary (adv_steps > 0) reads; adv_steps = 0 trains it jointly with the rest
TWO_TIMESCALE_OPTIONS = ("adv_lr", "adv_reset", "adv_retrain", "adv_weight_decay")


def check_model_options(opts: dict[str, Any], *, steps: int | None = None,
                        standardize: bool | None = None) -> dict[str, Any]:
    """Validate the model options (alpha in [0, 1], known schedule, ``lr_decay`` in (0, 1] ...) before any work;
    return them merged with the defaults.

    With ``steps`` (the run's number of iterations), ``opts`` are a config's options *as given* and the combinations
    a run would silently ignore are refused as well: ``adversary_warmup >= steps`` (``>= steps - 1`` under a ramped
    schedule, which is 0 at the first step after the warm-up): alpha_t would be 0 at every step, a plain
    classifier; ``momentum`` with ``optimizer="adam"`` (SGD's), ``ramp`` with a schedule other than ``"linear"``,
    ``max_adversary_weight`` with ``adversary_weight="alpha"``, and ``adv_lr``, ``adv_reset``,
    ``adv_retrain``, ``adv_weight_decay`` with ``adv_steps=0`` (the two-timescale adversary's). Without ``steps``
    (the data loaders, which see the entry's defaults merged in) only single values are checked.

    ``batch_size=1`` is refused with a standardizing adversary (:func:`check_batch_size`): ``standardize``, that of
    a network already built (:func:`fit_agnostic` passes the dataset's); ``None``: ``adv_standardize`` merged with
    its default (True), the network the loaders build for ``pyrozoo run`` and every sweep cell."""
    given = dict(opts)
    opts = {**MODEL_OPTIONS, **{k: v for k, v in opts.items() if k in MODEL_OPTIONS}}
    check_alpha(opts["alpha"])
    check_choice("schedule", opts["schedule"], SCHEDULES)
    check_probability("ramp", opts["ramp"])
    check_positive("prior_scale", opts["prior_scale"])
    check_network_options(opts["feature_dim"], opts["hidden"], opts["adv_layers"], opts["adv_standardize"])
    check_choice("optimizer", opts["optimizer"], ("sgd", "adam"))
    check_interval("momentum", opts["momentum"], 0.0, 1.0, high_open=True)
    check_lr_decay(opts["lr_decay"])
    for name in ("adv_steps", "adv_reset", "adv_retrain"):
        check_int(name, opts[name])
    check_positive("adv_lr", opts["adv_lr"])
    check_choice("extractor_loss", opts["extractor_loss"], EXTRACTOR_LOSSES)
    target_weight_value(opts["target_weight"], 0.0)
    check_choice("adversary_weight", opts["adversary_weight"], ADVERSARY_WEIGHTS)
    check_positive("max_adversary_weight", opts["max_adversary_weight"])
    opts["adversary_warmup"] = check_int("adversary_warmup", opts["adversary_warmup"], minimum=0)
    # the network the loaders build from the merged options, unless the caller has one built already
    check_batch_size(opts["batch_size"], bool(opts["adv_standardize"]) if standardize is None else standardize)
    wd = opts["adv_weight_decay"]
    check_nonnegative("adv_weight_decay", wd)
    check_interval("clip_norm", opts["clip_norm"], 0.0, hint=" (0: no clipping)")
    if steps is not None:
        _check_option_combinations(given, opts, check_int("steps", steps))
    return opts


def check_network_options(feature_dim: Any, hidden: Any, adv_layers: Any,
                          adv_standardize: Any) -> tuple[int, int, int, bool]:
    """The network options as ``(feature_dim, hidden, adv_layers, adv_standardize)``: ``feature_dim`` an integer
    >= 2 (:func:`check_feature_dim`), ``hidden`` (the MLP extractor's and the adversary's width) an integer >= 1,
    ``adv_layers`` (the adversary's hidden layers; 0: linear) an integer >= 0, ``adv_standardize`` a bool."""
    feature_dim = check_feature_dim(feature_dim)
    hidden = check_int("hidden", hidden, minimum=1)
    adv_layers = check_int("adv_layers", adv_layers)
    if not isinstance(adv_standardize, (bool, np.bool_)):
        raise PyrozooError(f"adv_standardize: expected true or false, got {adv_standardize!r}")
    return feature_dim, hidden, adv_layers, bool(adv_standardize)


def check_batch_size(batch_size: Any, standardize: bool) -> int:
    """``batch_size`` as an int >= 0 (0: full batch). A standardizing adversary (``adv_standardize``: a BatchNorm
    that, while training, standardizes each protected minibatch by its own mean and variance) needs at least 2
    rows per minibatch, so 1 is refused with it. The protected plate draws ``min(batch_size, n_p)`` rows and the
    two-timescale adversary ``min(2 * batch_size, n_p)``, with ``n_p >= 2`` (two protected classes), so every
    other size gives each BatchNorm batch >= 2 rows."""
    batch_size = check_int("batch_size", batch_size)
    if batch_size == 1 and standardize:
        raise PyrozooError("batch_size: expected 0 (full batch) or an integer >= 2 with adv_standardize=True (the "
                           "adversary's BatchNorm standardizes each protected minibatch by its own mean and variance, "
                           "which needs at least 2 rows), got 1; use batch_size >= 2, or adv_standardize=false")
    return batch_size


def check_lr_decay(lr_decay: Any) -> float:
    """``lr_decay`` is the factor the learning rate decays to over the run (geometrically): a number in (0, 1]."""
    return check_interval("lr_decay", lr_decay, 0.0, 1.0, low_open=True,
                          hint=" (the rate decays geometrically to lr * lr_decay; 1: constant)")


def _check_option_combinations(given: dict[str, Any], opts: dict[str, Any], steps: int) -> None:
    """Refuse the options given (``given``) that the run (merged options ``opts``, ``steps`` iterations) would
    ignore; see :func:`check_model_options`."""
    warm = opts["adversary_warmup"]
    # the schedule restarts at progress 0 after the warm-up, where a ramp (linear with ramp > 0, DANN) gives 0
    ramped = opts["schedule"] == "dann" or (opts["schedule"] == "linear" and opts["ramp"] > 0)
    limit = steps - 1 if ramped else steps
    if warm > 0 and warm >= limit:
        why = (f"alpha_t is 0 during the warm-up and, under the {opts['schedule']!r} schedule, at the first step "
               f"after it" if ramped else "alpha_t is 0 during the warm-up")
        raise PyrozooError(f"adversary_warmup: expected fewer than {limit} warm-up iterations with steps={steps}, "
                           f"got {warm}; {why}, so alpha would be 0 at every step and the fit a plain classifier")
    if "momentum" in given and opts["optimizer"] != "sgd":
        raise PyrozooError(f"momentum: applies only to optimizer='sgd'; with optimizer={opts['optimizer']!r} it "
                           f"would have no effect (remove it)")
    if "ramp" in given and opts["schedule"] != "linear":
        raise PyrozooError(f"ramp: applies only to schedule='linear' (the share of the run alpha takes to rise); with "
                           f"schedule={opts['schedule']!r} it would have no effect (remove it)")
    if "max_adversary_weight" in given and opts["adversary_weight"] != "odds":
        raise PyrozooError(f"max_adversary_weight: caps only adversary_weight='odds'; with "
                           f"adversary_weight={opts['adversary_weight']!r} it would have no effect (remove it)")
    unused = [k for k in TWO_TIMESCALE_OPTIONS if k in given]
    if unused and opts["adv_steps"] == 0:
        one = len(unused) == 1
        raise PyrozooError(f"{', '.join(unused)}: {'applies' if one else 'apply'} only to the two-timescale "
                           f"adversary (adv_steps > 0); with adv_steps=0 {'it' if one else 'they'} would have no "
                           f"effect (remove {'it' if one else 'them'})")


def attach_network(data: Dataset, *, feature_dim: int = 16, hidden: int = 32, adv_layers: int = 1,
                   adv_standardize: bool = True) -> Dataset:
    """Add the (untrained) network matching the inputs to ``data.inputs['net']``: the architecture that
    :func:`fit_agnostic` copies and trains (the dataset's network itself stays untrained, so one dataset serves any
    number of fits; :func:`fitted_network` gives a Result's trained one). The network options of a later fit
    (``feature_dim``, ``hidden``, ``adv_layers``, ``adv_standardize``) must agree with these; they are checked as
    the entry checks them (:func:`check_network_options`) before anything is built."""
    if not isinstance(data, Dataset):
        raise PyrozooError(f"data: expected a Dataset (make_agnostic_data, digits_task, ...), got "
                           f"{type(data).__name__}")
    feature_dim, hidden, adv_layers, adv_standardize = check_network_options(feature_dim, hidden, adv_layers,
                                                                             adv_standardize)
    net = AgnosticNetwork.for_inputs(data.inputs["x"], feature_dim=feature_dim, hidden=hidden,
                                     adversary_layers=adv_layers, standardize=adv_standardize)
    net.template = True  # fit_agnostic trains a copy; predict_proba refuses this untrained one
    data.inputs["net"] = net
    return data


def load_digits_task(seed: int, **options: Any) -> Dataset:
    """The digits task with its network; ``options`` are the entry's options (an unknown one, such as
    ``digits_task``'s ``n_context``, is an error rather than dropped)."""
    check_keys("options for load_digits_task", options, {**MODEL_OPTIONS, **DIGITS_OPTIONS})
    opts = check_model_options(options)
    task = {k: options[k] for k in DIGITS_OPTIONS if k in options}
    return attach_network(digits_task(seed, **task), feature_dim=opts["feature_dim"], hidden=opts["hidden"],
                          adv_layers=opts["adv_layers"], adv_standardize=opts["adv_standardize"])


def load_cps1985_task(seed: int, **options: Any) -> Dataset:
    """The CPS1985 wage task (protected: gender) with its network; digit-task options are ignored (the entry
    refuses them with this dataset), unknown ones are an error."""
    check_keys("options for load_cps1985_task", options, {**MODEL_OPTIONS, **DIGITS_OPTIONS})
    opts = check_model_options(options)
    return attach_network(cps1985_task(seed), feature_dim=opts["feature_dim"], hidden=opts["hidden"],
                          adv_layers=opts["adv_layers"], adv_standardize=opts["adv_standardize"])


def load_agnostic_file(path: str, seed: int, **options: Any) -> Dataset:
    """A user's CSV (``--data``; columns named by the options ``target``, ``protected``, ``features``) with its
    network: :func:`~pyrozoo.data.agnostic_file.read_agnostic_file`, whose checks all run before any fit."""
    check_keys("options for load_agnostic_file", options, {**MODEL_OPTIONS, **FILE_OPTIONS})
    opts = check_model_options(options)
    columns = {k: options[k] for k in FILE_OPTIONS if k in options}
    return attach_network(read_agnostic_file(path, seed, **columns), feature_dim=opts["feature_dim"],
                          hidden=opts["hidden"], adv_layers=opts["adv_layers"],
                          adv_standardize=opts["adv_standardize"])


GUIDE_PREFIX = "AutoNormal"


def adversary_loss(net: AgnosticNetwork, features: torch.Tensor, p: torch.Tensor, weight: torch.Tensor, *, n: int,
                   prior_scale: float = 1.0) -> torch.Tensor:
    """The adversary's part of the ``1/n``-scaled negative ELBO for frozen features ``z`` (one reparameterized
    draw of ``W_p, b_p`` from the mean-field guide ``q``):

        (1/n) [ sum_j w_j CE(p_j; W_p h(z_j) + b_p) + KL(q(W_p) || N(0, s^2)) + KL(q(b_p) || N(0, s^2)) ].

    Its gradients for ``h`` and the guide's ``W_p, b_p`` parameters equal those of ``TraceMeanField_ELBO`` on the
    model with ``protected_features`` (tested). Written in plain torch because the adversary takes several steps
    per iteration and two Pyro traces (model and guide) cost more than the arithmetic of such a step."""
    h = net.adversary(features)
    kl = features.new_zeros(())
    draws = {}
    for site in ("w_p", "b_p"):
        loc, scale = pyro.param(f"{GUIDE_PREFIX}.locs.{site}"), pyro.param(f"{GUIDE_PREFIX}.scales.{site}")
        draws[site] = loc + scale * torch.randn_like(loc)
        prior = dist.Normal(torch.zeros_like(loc), torch.full_like(loc, float(prior_scale)))
        kl = kl + torch.distributions.kl_divergence(dist.Normal(loc, scale), prior).sum()
    logits = h @ draws["w_p"].T + draws["b_p"]
    ce = torch.nn.functional.cross_entropy(logits, p, reduction="none")
    return ((weight * ce).sum() + kl) / n


class _SubsampleFrom(Messenger):
    """Draw the minibatch indices of the plates ``names`` from ``stream`` (an :class:`RngStream`) rather than from
    torch's global generator: how many rows such a plate has then shifts no other draw."""

    def __init__(self, names: tuple[str, ...], stream: RngStream):
        super().__init__()
        self.names, self.stream = set(names), stream

    def _pyro_sample(self, msg: Any) -> None:
        if msg["name"] in self.names and msg["value"] is None and not msg["is_observed"]:
            with self.stream:
                msg["value"] = msg["fn"](*msg["args"], **msg["kwargs"])


ADVERSARY_STREAM = 1  # the key of the adversary's RngStream (run_agnostic_svi)


def _adversary_param_names(names: list[str]) -> set[str]:
    """Param-store names of the adversary: its body ``h`` and the variational parameters of ``W_p, b_p``."""
    return {n for n in names if n.startswith("agnostic_net$$$adversary") or n.endswith((".w_p", ".b_p"))}


@keeps_caller_state
def run_agnostic_svi(
    model: Any,
    guide: Any,
    model_kwargs: dict[str, Any],
    *,
    schedule: AlphaSchedule,
    num_steps: int,
    lr: float = 0.1,
    optimizer: str = "sgd",
    momentum: float = 0.5,
    lr_decay: float = 0.1,
    adv_steps: int = 5,
    adv_lr: float = 0.01,
    adv_reset: int = 0,
    adv_retrain: int = 100,
    adv_weight_decay: float = 0.0,
    clip_norm: float = 0.0,
    adversary_warmup: int = 0,
    callback: Any = None,
    num_samples: int = 100,
    seed: int = 0,
    progress: bool = True,
    config: dict[str, Any] | None = None,
    model_name: str = "agnostic",
) -> Result:
    """SVI for the min-max problem of eq. (1): ``TraceMeanField_ELBO`` on the model and guide scaled by ``1 / n``
    (``n`` target rows, so ``lr`` acts on the per-row mean loss), SGD with momentum (the paper's optimizer) or Adam,
    the learning rate decaying geometrically to ``lr * lr_decay`` (``lr_decay`` in (0, 1]; 1: constant);
    ``schedule.progress`` follows ``t / T``. ``model_kwargs["batch_size"]`` is the minibatch of each plate, clamped
    to the plate's rows (see :func:`agnostic_model`; ``None`` or 0: full batch).

    Two update schemes:

    * ``adv_steps = 0``: one joint step per iteration through the gradient reversal layer (the paper's single SGD
      procedure); the adversary ``(h, W_p, b_p)`` takes the same optimizer as everything else.
    * ``adv_steps = k > 0`` (default, two-timescale): each iteration first takes ``k`` Adam steps (rate ``adv_lr``)
      of the adversary alone on the frozen features (``protected_features``) of ``min(2 * batch_size, n_p)`` random
      protected rows (all ``n_p`` at full batch), then one step of ``G_f`` and ``G_y`` through the reversal layer
      with the adversary held fixed. Every ``adv_reset`` iterations (0: never) the adversary is re-initialized and
      trained ``adv_retrain`` steps on the frozen features, so the extractor faces a fresh, converged probe rather
      than the adversary it has co-adapted with.

    The protected part draws from a random stream of its own (an :class:`~pyrozoo.inference.device.RngStream` of
    ``seed``): the adversary's rows, head draws and re-initializations, and the protected plate's minibatches. So the
    draws of ``G_f`` and ``G_y`` (their guide draws and target minibatches) do not depend on the adversary's
    training options (``adv_steps``, ``adv_reset``, ``adv_retrain``, ``adv_lr``, ``adv_weight_decay``) or on how
    many rows carry a protected label, and a same-seed ``alpha = 0`` fit is the plain classifier whatever they are.

    ``clip_norm > 0`` clips the gradient norm of ``G_f`` and ``G_y`` (the extractor and the target head's
    variational parameters) to ``clip_norm``, separately from the adversary's: with ``adv_steps = 0`` the
    adversary's parameters, stepped by the same optimizer, are clipped by their own norm (the two-timescale
    adversary's Adam steps are not clipped). So at ``alpha = 0`` the extractor and target step is exactly a plain
    classifier's, clipping included.

    A diverging run (a non-finite loss, features or adversary loss, or a parameter that left its range, such as a
    guide scale that underflowed to 0) stops with a :class:`PyrozooError` that names the rate to lower.

    ``adversary_warmup = N`` trains ``G_f`` and ``G_y`` alone for the first ``N`` iterations (alpha held at 0, the
    adversary not trained); then the adversary is trained ``adv_retrain`` steps on the frozen features and the alpha
    schedule runs over the remaining ``num_steps - N`` iterations.

    ``callback(step)``, if given, is called after every iteration (monitoring).

    Why a second scheme: with a single simultaneous step the extractor only has to fool the *current* adversary;
    on a strong linear cue it flips the encoding of the protected concept instead of removing it, and a fresh
    probe still reads it. Against an adversary kept near its best response, the extractor's objective approaches
    ``max_f min_p L_p = H(p | G_f(x))``, whose maximizer is a representation independent of ``p``.

    Why not the shared ``run_svi``: the shared engine offers Adam only, and with Adam on the extractor the game
    cycles on this cue (Adam's per-parameter normalization also cancels the alpha scaling of the reversed
    gradient). Plain SGD keeps the relative scales of eq. (1) and, with the decaying rate, lets the game settle."""
    check_choice("optimizer", optimizer, ("sgd", "adam"))
    num_steps = check_int("num_steps", num_steps, minimum=0)
    adv_steps = check_int("adv_steps", adv_steps)
    adv_reset = check_int("adv_reset", adv_reset)
    adv_retrain = check_int("adv_retrain", adv_retrain)
    check_positive("lr", lr)
    check_lr_decay(lr_decay)
    check_positive("adv_lr", adv_lr)
    check_interval("clip_norm", clip_norm, 0.0, hint=" (0: no clipping)")
    warm = min(check_int("adversary_warmup", adversary_warmup, minimum=0), num_steps)
    check_batch_size(model_kwargs.get("batch_size") or 0, getattr(model_kwargs["net"], "standardize", False))
    set_seed(seed)
    # the protected part's draws (the adversary's rows, head draws and resets, the protected plate's minibatches)
    # come from a stream of their own: they shift none of G_f's and G_y's draws (guide draws, target minibatches)
    adversary_rng = RngStream(seed, model_kwargs["x"].device, key=ADVERSARY_STREAM)
    protected_batches = _SubsampleFrom(("protected_id",), adversary_rng)
    n = max(int(model_kwargs["target_idx"].shape[0]), 1)
    scaled_model, scaled_guide = poutine.scale(protected_batches(model), 1.0 / n), poutine.scale(guide, 1.0 / n)
    gamma = lr_decay ** (1.0 / max(num_steps, 1))
    # set the guide up before any step; its trace of the model (which Pyro runs blocked, out of protected_batches'
    # reach) draws nothing the fit sees: a guide initialized by init_to_feasible holds the same values whatever it drew
    with poutine.block(), torch.no_grad(), same_rng_states():
        guide(**model_kwargs)
    elbo = TraceMeanField_ELBO()
    store = pyro.get_param_store()
    with poutine.block(), poutine.trace(param_only=True) as param_capture:
        elbo.differentiable_loss(scaled_model, scaled_guide, **model_kwargs)  # registers the network's params
    names = sorted(param_capture.trace.nodes)
    adv_names = _adversary_param_names(names) if adv_steps > 0 else set()
    # G_f and G_y (the extractor and the target head) and the adversary (h, W_p, b_p) are clipped by their own
    # gradient norms: at alpha = 0 the extractor/target step is then exactly a plain classifier's, whatever the
    # adversary's gradients are. With adv_steps = 0 the main optimizer also steps the adversary (joint_adv_params)
    adversary = _adversary_param_names(names)
    main_params = [store.get_param(k).unconstrained() for k in names if k not in adversary]
    adv_params = [store.get_param(k).unconstrained() for k in names if k in adv_names]
    joint_adv_params = [store.get_param(k).unconstrained() for k in names if k in adversary and not adv_names]
    opt_cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    opt_kw = {"lr": lr, "momentum": momentum} if optimizer == "sgd" else {"lr": lr}
    main_opt = opt_cls(main_params + joint_adv_params, **opt_kw)
    main_sched = torch.optim.lr_scheduler.ExponentialLR(main_opt, gamma)
    net: AgnosticNetwork = model_kwargs["net"]
    adv_opt = torch.optim.AdamW(adv_params, lr=adv_lr, weight_decay=adv_weight_decay) if adv_params else None
    init_adv = {k: store.get_param(k).unconstrained().detach().clone() for k in adv_names}
    fast_adversary = all(f"{GUIDE_PREFIX}.{kind}.{site}" in adv_names for kind in ("locs", "scales")
                         for site in ("w_p", "b_p"))

    p_idx, p_obs, p_weight = model_kwargs["protected_idx"], model_kwargs.get("p"), model_kwargs.get("protected_weight")
    n_p = int(p_idx.shape[0])
    adv_rows = min(n_p, 2 * int(model_kwargs.get("batch_size") or n_p))

    main_fix = "lower lr" if clip_norm > 0 else "lower lr or set clip_norm > 0 (gradient clipping)"

    def train_adversary(k_steps: int, step: int) -> None:
        """``k_steps`` full-batch steps of the adversary on the frozen features of ``adv_rows`` random protected rows
        (their eq.-1 weights rescaled by ``n_p / adv_rows`` so the loss estimates the full one). A diverged extractor
        (non-finite features) or adversary (non-finite loss) is a :class:`PyrozooError` naming the rate to lower,
        raised before the adversary takes a step on it. Its draws come from ``adversary_rng``."""
        with adversary_rng:
            _train_adversary(k_steps, step)

    def _train_adversary(k_steps: int, step: int) -> None:
        rows = torch.randperm(n_p, device=p_idx.device)[:adv_rows]
        with torch.no_grad():
            feats = net.features(model_kwargs["x"][p_idx[rows]])
        if k_steps and not bool(torch.isfinite(feats).all()):
            raise PyrozooError(f"svi: the features G_f(x) became non-finite at step {step} (the extractor "
                               f"diverged); {main_fix}")
        weight = torch.ones(n_p, dtype=feats.dtype, device=feats.device) if p_weight is None else p_weight
        adv_kwargs = {**model_kwargs, "protected_features": feats, "protected_idx": p_idx[rows],
                      "p": None if p_obs is None else p_obs[rows], "protected_weight": weight[rows] * (n_p / adv_rows),
                      "batch_size": None}
        fast = fast_adversary and adv_kwargs["p"] is not None
        for _ in range(k_steps):
            adv_opt.zero_grad()
            if fast:
                loss = adversary_loss(net, feats, adv_kwargs["p"], adv_kwargs["protected_weight"], n=n,
                                      prior_scale=model_kwargs.get("prior_scale", 1.0))
            else:
                loss = elbo.differentiable_loss(scaled_model, scaled_guide, **adv_kwargs)
            if not torch.isfinite(loss):
                raise PyrozooError(f"svi: the adversary's loss became {float(loss.detach())} at step {step}; lower "
                                   f"adv_lr (the adversary's Adam rate) or lr")
            loss.backward()
            adv_opt.step()

    def reset_adversary() -> None:
        nonlocal adv_opt
        with adversary_rng:  # a fresh adversary drawn from the adversary's own stream
            net.reset_adversary()
        with torch.no_grad():
            for k, v in init_adv.items():
                if not k.startswith("agnostic_net$$$"):
                    store.get_param(k).unconstrained().copy_(v)
        adv_opt = torch.optim.AdamW(adv_params, lr=adv_lr, weight_decay=adv_weight_decay)

    losses, alphas = [], []
    t0 = time.perf_counter()
    net.train()  # a standardizing adversary uses batch statistics while training, running ones afterwards
    bar = progress_bar(num_steps, "svi[agnostic]", progress)
    try:
        for step in range(num_steps):
            if step < warm:  # warm-up: G_f and G_y alone
                schedule.progress, schedule.hold = 0.0, True
            else:
                schedule.progress, schedule.hold = (step - warm) / max(num_steps - warm, 1), False
            alphas.append(float(schedule))
            adversary_phase = True
            try:
                if adv_opt is not None and step >= warm:
                    if warm and step == warm:
                        train_adversary(adv_retrain, step)
                    elif adv_reset and step > warm and (step - warm) % adv_reset == 0:
                        reset_adversary()
                        train_adversary(adv_retrain, step)
                    train_adversary(adv_steps, step)
                adversary_phase = False
                main_opt.zero_grad()
                loss = elbo.differentiable_loss(scaled_model, scaled_guide, **model_kwargs)
            except ValueError as exc:
                # a step with huge or non-finite gradients can leave a parameter outside its range (a NaN loc, a
                # guide scale that underflowed to 0): the next distribution built on it fails torch's argument check
                where = "the adversary's steps" if adversary_phase else "the extractor and target step"
                diverged = diverged_error(exc, f"at step {step} ({where})",
                                     "lower adv_lr (or lr)" if adversary_phase else main_fix)
                if diverged is None:
                    raise
                raise diverged from None
            if not torch.isfinite(loss):
                raise PyrozooError(f"svi: the loss became {float(loss.detach())} at step {step}; {main_fix}")
            loss.backward()
            if clip_norm > 0:  # each part by its own norm (see main_params above)
                torch.nn.utils.clip_grad_norm_(main_params, clip_norm)
                if joint_adv_params:
                    torch.nn.utils.clip_grad_norm_(joint_adv_params, clip_norm)
            main_opt.step()
            main_sched.step()
            losses.append(float(loss.detach()) * n)
            if callback is not None:
                callback(step)
            bar.update(1)
    finally:
        bar.close()
        schedule.progress, schedule.hold = 1.0, False
        net.eval()
        for prm in main_params + adv_params + joint_adv_params:
            prm.grad = None
    wall = time.perf_counter() - t0
    full = {**model_kwargs, "batch_size": None}
    try:
        names = latent_sites(trace_model(model, full))
        posterior = draw_from_guide(guide, full, names, num_samples)
    except ValueError as exc:  # the last step left a parameter outside its range
        diverged = diverged_error(exc, f"at its last step ({num_steps - 1})", main_fix)
        if diverged is None:
            raise
        raise diverged from None
    params = {k: v.detach().cpu() for k, v in pyro.get_param_store().items()}
    # with the buffers (a standardizing adversary's running moments) the network's whole state is in the Result
    params.update({NET_PREFIX + k: v.detach().cpu() for k, v in net.named_buffers()})
    tag = f"svi-{optimizer}" + (f"-adv{adv_steps}" if adv_steps else "")
    return assemble_result(
        tag, model, full, posterior, fit_stats={"loss": losses, "alpha": alphas}, params=params,
        log_likelihood_fn=pointwise_log_likelihood, guide=guide, seed=seed, wall_time=wall, config=config,
        model_name=model_name,
    )


@keeps_caller_state
def fit_agnostic(dataset: Dataset, config: RunConfig, *, guide: Any = None) -> Result:
    """Train the agnostic classifier (:func:`run_agnostic_svi`) with the alpha schedule on ``config.device``
    (``"auto"``: CUDA when present); the result's posterior holds draws of the Bayesian heads, ``params`` the point
    estimates (the network's parameters and buffers, the guide's variational parameters).

    The dataset's network (``inputs["net"]``) is the architecture: a copy of it is trained, so the dataset is left
    as it was and each Result keeps its own network (:func:`fitted_network`, used by :func:`agnostic_metrics` and
    :func:`predict_proba`). Options that would change a network already built (``feature_dim``, ``hidden``,
    ``adv_layers``, ``adv_standardize``) or data already rendered (the digits options) are refused when they
    disagree with the dataset, before any work."""
    # a direct call gets run_model's checks; the family's (options with steps) against the dataset's network, which
    # may have been built without the merged default adv_standardize=True that the entry's check assumes
    config = checked_config("agnostic", config, family=False)
    template = _network_of(dataset)
    _check_options_match_data(config.options, dataset, template)  # first: a mismatch with the network is the cause
    opts = check_model_options(config.options, steps=config.steps, standardize=template.standardize)
    device = resolve_device(config.device)
    kwargs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in dataset.model_kwargs().items()}
    x = kwargs["x"]
    net = copy.deepcopy(template).to(device)
    net.template = False
    kwargs["net"] = net
    pyro.set_rng_seed(config.seed)
    net.reset_parameters()
    schedule = AlphaSchedule(float(opts["alpha"]), opts["schedule"], float(opts["ramp"]), progress=0.0)
    kwargs.update(alpha=schedule, prior_scale=float(opts["prior_scale"]),
                  batch_size=int(opts["batch_size"]) or None, extractor_loss=opts["extractor_loss"],
                  target_weight=opts["target_weight"], adversary_weight=opts["adversary_weight"],
                  max_adversary_weight=float(opts["max_adversary_weight"]))
    default_lr = 0.3 if opts["optimizer"] == "sgd" else 0.01
    result = run_agnostic_svi(
        agnostic_model, guide or make_agnostic_guide(agnostic_model), kwargs, schedule=schedule,
        num_steps=config.steps, lr=config.lr if config.lr is not None else default_lr, optimizer=opts["optimizer"],
        momentum=float(opts["momentum"]), lr_decay=float(opts["lr_decay"]), adv_steps=int(opts["adv_steps"]),
        adv_lr=float(opts["adv_lr"]), adv_reset=int(opts["adv_reset"]), adv_retrain=int(opts["adv_retrain"]),
        clip_norm=float(opts["clip_norm"]), adv_weight_decay=float(opts["adv_weight_decay"]),
        adversary_warmup=int(opts["adversary_warmup"]), num_samples=config.num_samples,
        seed=config.seed, progress=config.progress, config=config.to_dict(), model_name=config.model,
    )
    return _label_classes(_name_axes(result, x.dim()), dataset.meta)


# option -> the AgnosticNetwork attribute it built
NETWORK_OPTIONS = {"feature_dim": "feature_dim", "hidden": "hidden", "adv_layers": "adversary_layers",
                   "adv_standardize": "standardize"}


def _check_options_match_data(given: dict[str, Any], dataset: Dataset, net: AgnosticNetwork) -> None:
    """Refuse the options given (``given``, a config's options as given) that the fit would ignore: a network
    option other than what the dataset's network was built with (they take effect in :func:`attach_network` /
    the loaders), and a digits option given with data the digits task did not render, or with another value than
    it rendered them with (``meta["digits_options"]``)."""
    for option, attr in NETWORK_OPTIONS.items():
        if option in given and given[option] != getattr(net, attr, given[option]):
            raise PyrozooError(
                f"{option}: the dataset's network was built with {option}={getattr(net, attr)!r}, got "
                f"{given[option]!r}; network options take effect when the network is built: attach_network(data, "
                f"{option}={given[option]!r}) (or leave the option out)")
    digits = [k for k in DIGITS_OPTIONS if k in given]
    if not digits:
        return
    rendered = dataset.meta.get("digits_options")
    if rendered is None:
        one = len(digits) == 1
        raise PyrozooError(
            f"{', '.join(digits)}: {'applies' if one else 'apply'} only to the digits task (load_digits_task renders "
            f"its images with {'it' if one else 'them'}); with dataset {dataset.name!r} {'it' if one else 'they'} "
            f"would have no effect (remove {'it' if one else 'them'})")
    for k in digits:
        if given[k] != rendered.get(k):
            raise PyrozooError(f"{k}: the digits dataset was rendered with {k}={rendered.get(k)!r}, got {given[k]!r}; "
                               f"render it with that value (load_digits_task(seed, {k}={given[k]!r})) or leave the "
                               f"option out")


def _name_axes(result: Result, x_ndim: int) -> Result:
    """ArviZ axes instead of ``w_y_dim_0`` and so on: ``class`` and ``feature`` (G_f's outputs) for the target head,
    ``protected_class`` and ``adversary_unit`` for the adversary's head; ``row`` (target and protected rows
    together, as ``target_idx`` / ``protected_idx`` index them) and the image or table axes for ``x``;
    ``target_idx`` on the target plate ``target_id``, ``protected_idx`` and ``protected_weight`` on the protected plate
    ``protected_id``, named here rather than guessed from their lengths (the two plates can be equally long and hold
    different rows)."""
    result.dims.update(w_y=["class", "feature"], b_y=["class"], w_p=["protected_class", "adversary_unit"],
                       b_p=["protected_class"])
    for name, dim in (("target_idx", "target_id"), ("protected_idx", "protected_id"),
                      ("protected_weight", "protected_id")):
        if name in result.constant_data:
            result.dims[name] = [dim]
    if "x" in result.constant_data:
        result.dims["x"] = ["row", "channel", "height", "width"] if x_ndim == 4 else ["row", "column"]
    return result


def _label_classes(result: Result, meta: dict[str, Any]) -> Result:
    """The ``class`` and ``protected_class`` coordinates carry the data's own labels (``meta["y_classes"]``,
    ``meta["p_classes"]``: a file's ``F``/``M``, a ``{1, 2}`` coding), not the codes 0..K-1 the model uses; the
    observed ``y`` and ``p`` stay codes, and an attribute (``class_codes``) says which label each code is."""
    notes = []
    for dim, key, site in (("class", "y_classes", "y"), ("protected_class", "p_classes", "p")):
        labels = meta.get(key)
        if labels is None:
            continue
        labels = [v.item() if isinstance(v, np.generic) else v for v in labels]
        result.coords[dim] = labels
        notes.append(f"{site}: " + ", ".join(f"{code} = {label!r}" for code, label in enumerate(labels)))
    if notes:
        result.attrs["class_codes"] = (f"observed_data y and p hold class codes 0..K-1, the positions of the "
                                       f"'class' and 'protected_class' coordinates: {'; '.join(notes)}")
    return result


@torch.no_grad()
def agnostic_metrics(result: Result, dataset: Dataset) -> dict[str, float]:
    """Target accuracy on every held-out split; the adversary's own protected accuracy; leakage by fresh probes
    (logistic regression and a small MLP trained on frozen features of the probe split, scored on the leakage
    split); demographic-parity and equalized-odds differences of the target predictions (tabular task).

    Scored with the result's own fitted network (:func:`fitted_network`), so any number of fits of one dataset can
    be scored in any order. A held-out row without a label counts only in the metrics that do not need it: target
    accuracy uses the rows with a target label, the adversary's accuracy, the probes (and their chance rate) and
    the demographic-parity difference those with a protected label, the equalized-odds difference those with both."""
    from pyrozoo.evaluation.probes import demographic_parity_difference, equalized_odds_difference, probe_leakage

    net = fitted_network(result, dataset)
    ref = next(net.parameters())
    splits = dataset.meta.get("splits", {})
    alpha = dict(result.config.get("options", {})).get("alpha", MODEL_OPTIONS["alpha"])
    out: dict[str, float] = {"alpha": check_alpha(alpha)}
    x = dataset.inputs["x"]

    def predict(xs: torch.Tensor, which: str) -> torch.Tensor:
        return predict_proba(net, xs.to(ref.device, ref.dtype), result.posterior, which).argmax(-1).cpu()

    def accuracy(pred: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None) -> float:
        """The share of correct predictions, an exact ratio of counts (not a float32 mean: 269/539 reads
        0.49907235621521334, not 0.4990723431110382)."""
        hits = pred == labels if rows is None else pred[rows] == labels[rows]
        return int(hits.sum()) / hits.numel()

    pred = predict(x[dataset.inputs["target_idx"]], "y")
    out["train_target_acc"] = accuracy(pred, dataset.observed["y"].cpu())
    table = dataset.meta.get("kind") == "table"
    for name, part in splits.items():
        if name == "probe":
            continue
        has_y = part["y"] >= 0 if "y" in part else None
        has_p = part["p"] >= 0 if "p" in part else None
        if has_y is not None or (has_p is not None and table):
            pred = predict(part["x"], "y")
        if has_y is not None and has_y.any():
            out[f"{name}_target_acc"] = accuracy(pred, part["y"], has_y)
        if has_p is not None and table and part["p"][has_p].unique().numel() >= 2:
            out[f"{name}_dp_diff"] = demographic_parity_difference(pred[has_p].numpy(), part["p"][has_p].numpy())
            both = has_p & has_y if has_y is not None else None
            if both is not None and part["p"][both].unique().numel() >= 2:
                out[f"{name}_eo_diff"] = equalized_odds_difference(part["y"][both].numpy(), pred[both].numpy(),
                                                                   part["p"][both].numpy())
        if has_p is not None and has_p.any():
            out[f"{name}_adversary_acc"] = accuracy(predict(part["x"], "p"), part["p"], has_p)
    leak = dataset.meta.get("leakage_split")
    if leak is not None and "probe" in splits:
        probe, scored = splits["probe"], splits[leak]
        rows_probe, rows_leak = probe["p"] >= 0, scored["p"] >= 0
        f_probe = net.features(probe["x"][rows_probe].to(ref.device, ref.dtype)).cpu().numpy()
        f_eval = net.features(scored["x"][rows_leak].to(ref.device, ref.dtype)).cpu().numpy()
        probes = probe_leakage(f_probe, probe["p"][rows_probe].numpy(), f_eval, scored["p"][rows_leak].numpy(),
                               seed=int(result.seed or 0))
        out.update({f"probe_{k}": v for k, v in probes.items()})
    return out


def _check_run_options(config: RunConfig) -> None:
    """The entry's ``check_options`` (``pyrozoo run`` and every sweep cell, before any data): the config's options as
    given, with its number of steps; ``batch_size`` against the network the loaders will build (``adv_standardize``
    merged with its default)."""
    check_model_options(config.options, steps=config.steps)


@register("agnostic")
def agnostic_entry() -> ZooModel:
    return ZooModel(
        name="agnostic",
        model=agnostic_model,
        simulate=load_digits_task,
        fit=fit_agnostic,
        inferences=("svi",),
        settings={"svi": SVI_SETTINGS},
        metrics=agnostic_metrics,
        options={**MODEL_OPTIONS, **DIGITS_OPTIONS, **FILE_OPTIONS},
        datasets={"digits": load_digits_task, "cps1985": load_cps1985_task},
        from_file=load_agnostic_file,
        text_options=tuple(FILE_OPTIONS),
        data_options={**{k: ("simulator", "digits") for k in DIGITS_OPTIONS}, **{k: ("file",) for k in FILE_OPTIONS}},
        check_options=_check_run_options,
        tiny={"num_samples": 5, "steps": 8},
        description="Agnostic classifier: gradient-reversal adversary removes a protected concept (Jia et al. 2018)",
    )
