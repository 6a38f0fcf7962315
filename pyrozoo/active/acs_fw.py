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

The inner products enter only through an embedding matrix Phi (M, K) with <L_n, L_m> = phi_n . phi_m: a closed-form
feature map (weighted Fisher / weighted Euclidean for Bayesian linear regression, K = D^2) or J random
projections (K = J). Every step is then O(M K) and nothing of size M x M is ever formed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from pyrozoo.active.base import Acquisition, Batch
from pyrozoo.active.projections import check_num_projections, projected_embedding
from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_choice, check_int

INNER_PRODUCTS = ("fisher", "euclidean", "projection")


@dataclass
class FrankWolfeResult:
    """Weights on the pool (M,), the support in selection order, and ||L - L(w)||^2 at w = 0 and after each step."""

    weights: torch.Tensor
    support: torch.Tensor
    objective: torch.Tensor
    vertices: torch.Tensor  # the vertex chosen at each step (repeats possible)


def frank_wolfe(embedding: torch.Tensor, num_steps: int) -> FrankWolfeResult:
    """Run ``num_steps`` Frank–Wolfe iterations on min ||L - Phi^T w||^2 over the sigma-scaled simplex.

    ``embedding`` is Phi (M, K); computation is in float64. Rows with zero norm carry no information and are never
    chosen (if every row is zero the first point is returned)."""
    num_steps = check_int("num_steps", num_steps, minimum=1)
    phi = embedding.to(torch.float64)
    m = phi.shape[0]
    sig_n = phi.norm(dim=1)
    sig = sig_n.sum()
    usable = sig_n > 1e-12 * max(float(sig_n.max()), 1e-300)
    target = phi.sum(0)  # L
    lw = torch.zeros_like(target)  # L(w)
    w = torch.zeros(m, dtype=torch.float64, device=phi.device)
    objective = [float((target - lw) @ (target - lw))]
    vertices: list[int] = []
    safe_sig = torch.where(usable, sig_n, torch.ones_like(sig_n))
    for _ in range(num_steps):
        resid = target - lw
        scores = (phi @ resid) / safe_sig
        scores = torch.where(usable, scores, torch.full_like(scores, -torch.inf))
        f = int(torch.argmax(scores))
        vertices.append(f)
        if not bool(usable[f]):
            w[f] = 1.0
            break
        scale = sig / sig_n[f]
        d = scale * phi[f] - lw
        dd = d @ d
        gamma = torch.clamp((d @ resid) / dd, 0.0, 1.0) if dd > 0 else torch.zeros((), dtype=torch.float64)
        w = (1 - gamma) * w
        w[f] += gamma * scale
        lw = lw + gamma * d
        objective.append(float((target - lw) @ (target - lw)))
    order = list(dict.fromkeys(v for v in vertices if w[v] > 0))
    support = torch.tensor(order, dtype=torch.long, device=phi.device)
    if support.numel() == 0:  # gamma was 0 at every step: keep the first vertex so a batch is never empty
        support = torch.tensor(vertices[:1], dtype=torch.long, device=phi.device)
    return FrankWolfeResult(w, support, torch.tensor(objective, dtype=torch.float64),
                            torch.tensor(vertices, dtype=torch.long))


class ACSFW(Acquisition):
    """ACS-FW batch selection.

    ``inner_product``: ``"fisher"`` or ``"euclidean"`` use the posterior's closed-form embedding (Bayesian linear
    regression); ``"projection"`` uses ``num_projections`` (J) random projections and works for any adapter that
    gives posterior function draws. ``"auto"`` takes the closed-form Fisher product where there is one, else
    projections."""

    def __init__(self, inner_product: str = "auto", num_projections: int = 100) -> None:
        check_choice("inner_product", inner_product, ("auto", *INNER_PRODUCTS))
        self.inner_product = inner_product
        self.num_projections = check_num_projections(num_projections)
        self.name = "acs-fw" if inner_product == "auto" else f"acs-fw-{inner_product}"

    def embedding(self, posterior, x_pool: torch.Tensor,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, str]:
        """The (M, K) embedding Phi of the pool and the inner product actually used."""
        kind = self.inner_product
        if kind in ("auto", "fisher", "euclidean"):
            phi = posterior.closed_form_embedding(x_pool, "fisher" if kind == "auto" else kind)
            if phi is not None:
                return phi, "fisher" if kind == "auto" else kind
            if kind != "auto":
                raise PyrozooError(f"inner_product: {type(posterior).__name__} has no closed-form {kind!r} inner "
                                   "product; use 'projection'")
        return projected_embedding(posterior, x_pool, self.num_projections, generator), "projection"

    def _select(self, posterior, x_pool: torch.Tensor, batch_size: int,
                generator: torch.Generator | None) -> Batch:
        start = time.perf_counter()
        phi, kind = self.embedding(posterior, x_pool, generator)
        fw = frank_wolfe(phi, batch_size)
        return Batch(indices=fw.support, requested=batch_size, acquisition=self.name, weights=fw.weights,
                     objective=fw.objective,
                     info={"inner_product": kind, "embedding_dim": int(phi.shape[1]),
                           "vertices": fw.vertices, "seconds": time.perf_counter() - start})
