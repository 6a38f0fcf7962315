"""ACS-FW: Bayesian batch active learning as sparse subset approximation (Pinsler et al. 2019).

Each pool point n contributes L_n(theta) = E_{y_n}[log p(y_n | x_n, theta)] + H[y_n | x_n, D], a vector in a Hilbert
space with norm sigma_n = ||L_n||; the batch should make L(w) = sum_n w_n L_n close to L = sum_n L_n. The
cardinality-constrained problem is relaxed to the polytope {w >= 0, sum_n w_n sigma_n = sigma}, sigma = sum_n
sigma_n, and solved with b Frank–Wolfe steps:

    f = argmax_n <L - L(w), L_n> / sigma_n                      (the best vertex  sigma / sigma_f 1_f)
    gamma = <sigma / sigma_f L_f - L(w), L - L(w)> / ||sigma / sigma_f L_f - L(w)||^2   (exact line search)
    w <- (1 - gamma) w + gamma sigma / sigma_f 1_f

The batch is the support of w: at most b points, fewer when a vertex is revisited. gamma is clipped to [0, 1] to
stay in the polytope; since the objective is a convex quadratic along the segment and gamma = 0 leaves it unchanged,
||L - L(w)||^2 never increases.

The inner products enter only through a :class:`~pyrozoo.active.base.PoolKernel`: the norms, the row sums <L_n, L>
and one column per step. Closed forms (weighted Fisher / weighted Euclidean for Bayesian linear regression) give a
column in O(M D); J random projections give an embedding Phi (M, J) and a column in O(M J). Nothing of size M x M
is ever formed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from pyrozoo.active.base import Acquisition, Batch, EmbeddingKernel, PoolKernel, check_posterior_finite
from pyrozoo.active.projections import check_num_projections, projected_embedding
from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_choice, check_int

INNER_PRODUCTS = ("fisher", "euclidean", "projection")
DEFAULT_NUM_PROJECTIONS = 100


@dataclass
class FrankWolfeResult:
    """Weights on the pool (M,), the support in selection order, and ||L - L(w)||^2 at w = 0 and after each step."""

    weights: torch.Tensor
    support: torch.Tensor
    objective: torch.Tensor
    vertices: torch.Tensor  # the vertex chosen at each step (repeats possible)


def frank_wolfe(kernel: PoolKernel | torch.Tensor, num_steps: int) -> FrankWolfeResult:
    """Run ``num_steps`` Frank–Wolfe iterations on min ||L - L(w)||^2 over the sigma-scaled simplex.

    ``kernel`` gives the inner products (a :class:`PoolKernel`, or an embedding Phi (M, K)). Everything is
    expressed through g = K 1 (g_n = <L_n, L>), h = K w (h_n = <L_n, L(w)>) and one new column K[:, f] per step:

        <d, L - L(w)> = s (g_f - h_f) - (w.g - w.h),   ||d||^2 = s^2 K_ff - 2 s h_f + w.h,   s = sigma / sigma_f
        ||L - L(w)||^2 = 1.g - 2 w.g + w.h

    so a step costs one column, O(M) for closed forms. Rows with zero norm carry no information and are never
    chosen (if every row is zero the first point is returned). Non-finite inner products (a posterior that gave NaN
    or inf) are an error, not a batch."""
    num_steps = check_int("num_steps", num_steps, minimum=1)
    if isinstance(kernel, torch.Tensor):
        if kernel.dim() != 2 or kernel.shape[0] == 0:
            raise PyrozooError(f"kernel: expected an embedding Phi of shape (M, K) with M >= 1 pool points, got "
                               f"shape {tuple(kernel.shape)}")
        kernel = EmbeddingKernel(kernel)
    elif not isinstance(kernel, PoolKernel):  # a NumPy array failed on .diag(), a 1-D tensor with an IndexError
        raise PyrozooError(f"kernel: expected a PoolKernel or a torch.Tensor embedding Phi (M, K), got "
                           f"{type(kernel).__module__}.{type(kernel).__name__} (convert an array with torch.as_tensor)")
    sq = kernel.diag().to(torch.float64)
    check_posterior_finite("squared norms (the pool kernel's diag())", sq)
    sq = sq.clamp(min=0)
    sig_n = sq.sqrt()
    sig = float(sig_n.sum())
    usable = sig_n > 1e-12 * max(float(sig_n.max()), 1e-300)
    all_usable = bool(usable.all())
    inv_sig = torch.where(usable, 1.0 / torch.where(usable, sig_n, torch.ones_like(sig_n)), torch.zeros_like(sig_n))
    g = kernel.row_sums().to(torch.float64)
    check_posterior_finite("inner products <L_n, L> (the pool kernel's row_sums())", g)
    total = float(g.sum())
    h = torch.zeros_like(g)
    w = torch.zeros_like(g)
    wg = wh = 0.0  # w . g and w . h, kept as Python floats
    objective = [total]
    vertices: list[int] = []
    for _ in range(num_steps):
        scores = (g - h).mul_(inv_sig)
        if not all_usable:
            scores.masked_fill_(~usable, -torch.inf)
        f = int(torch.argmax(scores))
        vertices.append(f)
        if not bool(usable[f]):
            w[f] = 1.0
            break
        s = sig / float(sig_n[f])
        g_f, h_f = float(g[f]), float(h[f])
        num = s * (g_f - h_f) - (wg - wh)
        den = s * s * float(sq[f]) - 2 * s * h_f + wh
        gamma = min(max(num / den, 0.0), 1.0) if den > 0 else 0.0
        col = kernel.column(f).to(torch.float64)
        check_posterior_finite(f"inner products <L_n, L_{f}> (the pool kernel's column({f}))", col)
        w.mul_(1 - gamma)
        w[f] += gamma * s
        h.mul_(1 - gamma).add_(col, alpha=gamma * s)
        wg, wh = float(w @ g), float(w @ h)
        objective.append(total - 2 * wg + wh)
    positive = (w[torch.tensor(vertices, device=w.device)] > 0).tolist()
    order = list(dict.fromkeys(v for v, keep in zip(vertices, positive, strict=True) if keep))
    support = torch.tensor(order, dtype=torch.long, device=g.device)
    if support.numel() == 0:  # gamma was 0 at every step: keep the first vertex so a batch is never empty
        support = torch.tensor(vertices[:1], dtype=torch.long, device=g.device)
    return FrankWolfeResult(w, support, torch.tensor(objective, dtype=torch.float64),
                            torch.tensor(vertices, dtype=torch.long))


class ACSFW(Acquisition):
    """ACS-FW batch selection.

    ``inner_product``: ``"fisher"`` or ``"euclidean"`` use the posterior's closed-form inner product (BLR,
    neural-linear, probit Fisher, GP Euclidean); ``"projection"`` uses ``num_projections`` (J) random projections and
    works for any adapter that gives posterior function draws. ``"auto"`` takes the closed-form Fisher product where
    there is one, else the closed-form Euclidean one, else projections (sample-based posteriors).

    ``num_projections`` left as None means :data:`DEFAULT_NUM_PROJECTIONS`, capped at the posterior's number of
    stored draws (``max_function_draws``, e.g. a :class:`~pyrozoo.active.posteriors.SampledRegressionPosterior`);
    the batch's ``note`` says when it was capped. An explicit J larger than the stored draws is an error."""

    def __init__(self, inner_product: str = "auto", num_projections: int | None = None) -> None:
        check_choice("inner_product", inner_product, ("auto", *INNER_PRODUCTS))
        self.inner_product = inner_product
        self.explicit_num_projections = num_projections is not None
        self.num_projections = (DEFAULT_NUM_PROJECTIONS if num_projections is None
                                else check_num_projections(num_projections))
        self.name = "acs-fw" if inner_product == "auto" else f"acs-fw-{inner_product}"

    def projections_for(self, posterior) -> tuple[int, str]:
        """J to use with ``posterior`` and a note ("" unless the default was capped at its stored draws). Raises
        before any work if an explicit J exceeds them."""
        stored = getattr(posterior, "max_function_draws", None)
        if stored is None or self.num_projections <= stored:
            return self.num_projections, ""
        if self.explicit_num_projections:
            raise PyrozooError(f"num_projections: expected at most the {stored} stored posterior draws, "
                               f"got {self.num_projections}")
        return stored, (f"{self.name}: num_projections {stored} (the posterior's stored draws) instead of the "
                        f"default {self.num_projections}")

    def kernel(self, posterior, x_pool: torch.Tensor,
               generator: torch.Generator | None = None) -> tuple[PoolKernel, str, dict]:
        """The pool's inner products, the inner product actually used, and what the batch's ``info`` records about
        it (the number of projections, and a note when the default was capped)."""
        kind = self.inner_product
        wanted = ("fisher", "euclidean") if kind == "auto" else (kind,) if kind != "projection" else ()
        for want in wanted:
            oracle = posterior.closed_form_kernel(x_pool, want) if hasattr(posterior, "closed_form_kernel") else None
            if oracle is None and hasattr(posterior, "closed_form_embedding"):
                phi = posterior.closed_form_embedding(x_pool, want)
                oracle = None if phi is None else EmbeddingKernel(phi)
            if oracle is not None:
                return oracle, want, {}
        if kind not in ("auto", "projection"):
            raise PyrozooError(f"inner_product: {type(posterior).__name__} has no closed-form {kind!r} inner "
                               "product; use 'projection'")
        num_projections, note = self.projections_for(posterior)
        phi = projected_embedding(posterior, x_pool, num_projections, generator)
        info = {"num_projections": num_projections, **({"note": note} if note else {})}
        return EmbeddingKernel(phi), "projection", info

    def _select(self, posterior, x_pool: torch.Tensor, batch_size: int,
                generator: torch.Generator | None) -> Batch:
        start = time.perf_counter()
        oracle, kind, extra = self.kernel(posterior, x_pool, generator)
        fw = frank_wolfe(oracle, batch_size)
        return Batch(indices=fw.support, requested=batch_size, acquisition=self.name, weights=fw.weights,
                     objective=fw.objective,
                     info={"inner_product": kind, "vertices": fw.vertices, **extra,
                           "seconds": time.perf_counter() - start})
