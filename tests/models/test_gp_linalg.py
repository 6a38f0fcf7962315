"""gp_linalg: kernels stay accurate for inputs far from the origin (centred before the |x|^2 - 2 x.z + |z|^2
expansion) with the gradients of the uncentred formula, and the not-positive-definite error names the cause."""

from __future__ import annotations

import math

import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.models.gp import exact_log_marginal
from pyrozoo.models.gp_linalg import jitter_cholesky, kernel_matrix, sparse_gp_stats

DT = torch.float64
EPS = torch.finfo(DT).eps
KINDS = ("rbf", "matern32", "matern52")
# max |dk / d(r^2)| / s^2 over r >= 0: rbf 1/2, matern32 3/2, matern52 5/6 (all at r = 0)
SLOPE = {"rbf": 0.5, "matern32": 1.5, "matern52": 5.0 / 6.0}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def t(v):
    return torch.tensor(v, dtype=DT)


def _uncentred_kernel(kind, X, Z, ls, var):
    """kernel_matrix as it was before centring (the same augmented products on the raw inputs): the reference for
    gradients on well-scaled inputs, and the thing that fails far from the origin."""
    Xs, Zs = X / ls, Z / ls
    one_x, one_z = torch.ones_like(Xs[:, :1]), torch.ones_like(Zs[:, :1])
    if kind == "rbf":
        Xa = torch.cat([Xs, -0.5 * (Xs * Xs).sum(-1, keepdim=True), one_x], -1)
        Za = torch.cat([Zs, one_z, -0.5 * (Zs * Zs).sum(-1, keepdim=True) + var.log()], -1)
        return torch.exp(Xa @ Za.T)
    Xa = torch.cat([-2.0 * Xs, (Xs * Xs).sum(-1, keepdim=True), one_x], -1)
    Za = torch.cat([Zs, one_z, (Zs * Zs).sum(-1, keepdim=True)], -1)
    r = (Xa @ Za.T).clamp(min=0.0).clamp(min=1e-36).sqrt()
    c = math.sqrt(3.0) if kind == "matern32" else math.sqrt(5.0)
    poly = 1.0 + c * r if kind == "matern32" else 1.0 + c * r + (c * r) ** 2 / 3.0
    return var * poly * torch.exp(-c * r)


def _offset_pair(n, m, offset, span=10.0, seed=0):
    """Inputs offset + U(0, span) (n x 1 and m x 1) and the same stored values minus the offset: x - offset is
    exact in float64 (Sterbenz), so both sets have exactly the same pairwise differences."""
    gen = torch.Generator().manual_seed(seed)
    X = offset + span * torch.rand(n, 1, generator=gen, dtype=DT)
    Z = offset + span * torch.rand(m, 1, generator=gen, dtype=DT)
    return X, Z, X - offset, Z - offset


def _kernel_tol(kind, span, ls, var, d=1):
    """Bound on |K(offset) - K(0)| entrywise. After centring every scaled input has |x / l| <= R = span / l, so the
    augmented product (d + 2 terms of size <= R^2) rounds the squared distance by <= (d + 3) eps R^2 on either
    side; the kernel moves by at most SLOPE s^2 per unit of r^2. Twice (both computations), and a factor 4 for
    the scaling, exp and the polynomial: 8 (d + 3) eps R^2 SLOPE s^2 (~4e-13 here). Without centring the
    rounding is eps |x / l|^2 ~ eps offset^2: 2e-2 at 1e7."""
    R = span / ls
    return 8 * (d + 3) * EPS * R**2 * SLOPE[kind] * var


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_far_from_the_origin_equals_the_kernel_near_it(kind):
    """1-D x = 1e7 + U(0, 10), lengthscale 1: the kernel, its cross-covariance with other inputs (both argument
    orders, as the exact posterior and the sparse path use them) and K(Z, Z) agree with the same inputs shifted
    to [0, 10]; the uncentred formula is off by more than 1e-3 (the QA report: a misleading not-PD error)."""
    X, Z, X0, Z0 = _offset_pair(40, 7, 1e7)
    ls, var = t(1.0), t(1.3)
    tol = _kernel_tol(kind, 10.0, 1.0, 1.3)
    for a, b, a0, b0 in ((X, X, X0, X0), (X, Z, X0, Z0), (Z, X, Z0, X0), (Z, Z, Z0, Z0)):
        K, K0 = kernel_matrix(kind, a, b, ls, var), kernel_matrix(kind, a0, b0, ls, var)
        assert float((K - K0).abs().max()) <= tol
    assert float((_uncentred_kernel(kind, X, X, ls, var) - kernel_matrix(kind, X0, X0, ls, var)).abs().max()) > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_log_marginal_far_from_the_origin_equals_the_one_near_it(kind):
    """log N(y | 0, K + sigma^2 I) at offset 1e7 vs 0. Tolerance from first-order perturbation: with an entrywise
    perturbation e of K + sigma^2 I (the kernel bound above plus the Cholesky's backward error, 3 n eps per unit
    of the diagonal, on each side), ||dK||_2 <= n e and
    |d log N| = |tr(Ky^-1 dK) - alpha^T dK alpha| / 2 <= n e (tr Ky^-1 + |alpha|^2) / 2."""
    X, _, X0, _ = _offset_pair(40, 1, 1e7, seed=1)
    y = torch.sin(X0[:, 0]) + 0.1 * torch.randn(40, generator=torch.Generator().manual_seed(2), dtype=DT)
    h = {"lengthscale": t(1.0), "variance": t(1.3), "noise": t(0.01)}
    Ky = kernel_matrix(kind, X0, X0, h["lengthscale"], h["variance"]) + h["noise"] * torch.eye(40, dtype=DT)
    alpha = torch.linalg.solve(Ky, y)
    e = _kernel_tol(kind, 10.0, 1.0, 1.3) + 2 * 3 * 40 * EPS * (1.3 + 0.01)
    tol = 0.5 * 40 * e * (float(torch.linalg.inv(Ky).trace()) + float(alpha @ alpha))
    far, near = exact_log_marginal(X, y, kernel=kind, **h), exact_log_marginal(X0, y, kernel=kind, **h)
    assert abs(float(far - near)) <= tol
    assert tol < 1e-6  # tight enough to catch the uncentred kernel (1.5e-2 at offset 1e6 in the QA report)


@pytest.mark.parametrize("method", ["fitc", "vfe"])
def test_sparse_statistics_far_from_the_origin(method):
    """The chunked sparse path (K_uu, and K_uf block by block with Z as the first argument, so one centre for
    every chunk) at offset 1e7 vs 0. K_uu of 12 pseudo-inputs on [0, 10] at l = 1 has cond ~ 1e5, which amplifies
    the 1e-13 kernel perturbation; 1e-7 is far above that and far below the uncentred error (an indefinite K_uu
    or an O(1) change)."""
    X, Z, X0, Z0 = _offset_pair(300, 12, 1e7, seed=3)
    y = torch.sin(X0[:, 0])
    kw = {"kind": "rbf", "lengthscale": t(1.0), "variance": t(1.0), "noise": t(0.05), "method": method,
          "chunk_size": 64}
    far = sparse_gp_stats(X, y, Z, **kw).log_marginal(method, kw["noise"])
    near = sparse_gp_stats(X0, y, Z0, **kw).log_marginal(method, kw["noise"])
    assert abs(float(far - near)) <= 1e-7 * abs(float(near))


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_the_uncentred_kernel_on_well_scaled_inputs(kind):
    """The centre is detached: the kernel does not depend on it, so the gradients with respect to both inputs
    (Z is the first argument on the sparse path, the training X in the exact GP), the ARD lengthscales and the
    variance are the uncentred formula's. Checked for K(Z, X), K(X, Z) and K(Z, Z) through a random weighting
    W (any downstream gradient is one). The two differ only by rounding of r^2 (relative ~ (d + 3) eps R^2, about
    1e-13 here); 1e-10 of the gradient's norm leaves room for summing over the 30 x 8 entries."""
    gen = torch.Generator().manual_seed(4)
    X0 = 6.0 * torch.rand(30, 3, generator=gen, dtype=DT) - 3.0
    Z0 = 6.0 * torch.rand(8, 3, generator=gen, dtype=DT) - 3.0

    def grads(fn, first, second):
        X, Z = X0.clone().requires_grad_(), Z0.clone().requires_grad_()
        ls, var = t([0.6, 1.0, 2.0]).requires_grad_(), t(1.4).requires_grad_()
        a, b = {"X": X, "Z": Z}[first], {"X": X, "Z": Z}[second]
        W = torch.rand(a.shape[0], b.shape[0], generator=torch.Generator().manual_seed(5), dtype=DT) - 0.5
        (W * fn(kind, a, b, ls, var)).sum().backward()
        return torch.cat([g.grad.reshape(-1) for g in (X, Z, ls, var) if g.grad is not None])

    for first, second in (("Z", "X"), ("X", "Z"), ("Z", "Z")):
        g_new, g_old = grads(kernel_matrix, first, second), grads(_uncentred_kernel, first, second)
        assert g_new.shape == g_old.shape and bool(torch.isfinite(g_new).all())
        assert float((g_new - g_old).norm()) <= 1e-10 * float(g_old.norm()), (first, second)


def test_a_bad_input_row_spoils_only_its_own_entries():
    """A NaN row makes the centre NaN; the kernel falls back to no centring rather than NaN everywhere."""
    X = t([[0.0], [1.0], [float("nan")]])
    K = kernel_matrix("rbf", X, X[:2], t(1.0), t(1.0))
    assert bool(torch.isfinite(K[:2]).all()) and bool(torch.isnan(K[2]).all())


def test_not_positive_definite_names_the_cause():
    """A negative variance or a NaN is not a matter of duplicate inputs; a rank-deficient matrix still is."""
    X = t([[0.0], [0.5], [2.0]])
    with pytest.raises(PyrozooError, match=r"diagonal entries are <= 0 \(smallest -1\).*variance and the noise") as e:
        jitter_cholesky(kernel_matrix("matern52", X, X, t(1.0), t(-1.0)), name="K")
    assert "duplicate" not in str(e.value)
    with pytest.raises(PyrozooError, match="K: not positive definite: it holds NaN or inf") as e:
        jitter_cholesky(kernel_matrix("rbf", X, X, t(1.0), t(-1.0)), name="K")  # log of a negative variance
    assert "duplicate" not in str(e.value)
    with pytest.raises(PyrozooError, match="check for duplicate inputs"):  # positive diagonal, indefinite
        jitter_cholesky(t([[1.0, 2.0], [2.0, 1.0]]), name="K")


@pytest.mark.parametrize("kind", KINDS)
def test_batched_hyperparameters_give_one_kernel_per_draw(kind):
    """Vectorized draws (QA: Predictive(parallel=True) over gp_model with priors crashed with "size of tensor a (8)
    must match b (5)"): lengthscale (B..., d) and variance B + (1, 1) give K (B..., n, m) whose entry b is the
    kernel at draw b alone; a batched variance with an unbatched lengthscale, and the reverse, broadcast."""
    gen = torch.Generator().manual_seed(4)
    X, Z = torch.randn(9, 2, generator=gen, dtype=DT), torch.randn(4, 2, generator=gen, dtype=DT)
    ls = 0.5 + torch.rand(5, 1, 2, generator=gen, dtype=DT)  # B = (5, 1), as a vectorized site gives it
    var = 0.5 + torch.rand(5, 1, 1, 1, generator=gen, dtype=DT)
    for a, b in ((X, X), (X, Z), (Z, X)):
        K = kernel_matrix(kind, a, b, ls, var)
        assert K.shape == (5, 1, a.shape[0], b.shape[0])
        for i in range(5):
            want = kernel_matrix(kind, a, b, ls[i, 0], var[i, 0, 0, 0])
            torch.testing.assert_close(K[i, 0], want, rtol=1e-13, atol=0.0)
    Kv = kernel_matrix(kind, X, Z, t([0.7, 1.3]), var)  # variance batched only
    Kl = kernel_matrix(kind, X, Z, ls, t(1.1))  # lengthscale batched only
    for i in range(5):
        torch.testing.assert_close(Kv[i, 0], kernel_matrix(kind, X, Z, t([0.7, 1.3]), var[i, 0, 0, 0]), rtol=1e-13,
                                   atol=0.0)
        torch.testing.assert_close(Kl[i, 0], kernel_matrix(kind, X, Z, ls[i, 0], t(1.1)), rtol=1e-13, atol=0.0)


def test_batched_jitter_cholesky_factors_each_matrix_on_its_own():
    """A batch of a positive definite matrix and a singular one (duplicate inputs) 100x larger: each entry is the
    factor of that matrix alone, with its own mean diagonal for the jitter; the PD one takes no jitter (it was
    jittered along with the singular one, relative to the mean diagonal of the whole batch)."""
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(6, 1, generator=gen, dtype=DT)
    Xd = torch.cat([X[:4], X[:2]])
    A = torch.stack([kernel_matrix("rbf", X, X, t(1.0), t(1.0)) + 0.1 * torch.eye(6, dtype=DT),
                     kernel_matrix("rbf", Xd, Xd, t(1.0), t(100.0))])
    L = jitter_cholesky(A)
    torch.testing.assert_close(L[0], torch.linalg.cholesky(A[0]), rtol=1e-14, atol=0.0)
    torch.testing.assert_close(L[1], jitter_cholesky(A[1]), rtol=1e-14, atol=0.0)
    assert not torch.equal(L[1] @ L[1].T, A[1])  # the singular one did take jitter
    with pytest.raises(PyrozooError, match="K: not positive definite"):
        jitter_cholesky(torch.stack([A[0], -torch.eye(6, dtype=DT)]), name="K")


@pytest.mark.parametrize("chunk_size", [-1, 0, 2.5, True, "8"])
@pytest.mark.parametrize("method", ["vfe", "fitc"])
def test_sparse_stats_reject_a_chunk_size_that_is_not_a_positive_integer(chunk_size, method):
    """chunk_size=-1 made range(0, n, -1) empty: no chunk was accumulated and the bound was silently wrong
    (-465.9 for VFE instead of -163.7 on this problem); 0 and 2.5 failed with a bare ValueError / TypeError.
    Every public entry point (the statistics, the marginal, the pointwise log-likelihood) says what it expects."""
    from pyrozoo.models.sparse_gp import sparse_log_likelihood, sparse_log_marginal

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(50, 1, generator=gen, dtype=DT)
    y = torch.randn(50, generator=gen, dtype=DT)
    Z = X[:5].clone()
    h = {"lengthscale": t(1.0), "variance": t(1.0), "noise": t(0.1)}
    msg = f"chunk_size: expected an integer >= 1, got {chunk_size!r}"
    with pytest.raises(PyrozooError, match=f"^{msg}$".replace(".", r"\.")):
        sparse_gp_stats(X, y, Z, kind="rbf", method=method, chunk_size=chunk_size, **h)
    with pytest.raises(PyrozooError, match="chunk_size: expected an integer >= 1"):
        sparse_log_marginal(X, y, Z, method=method, chunk_size=chunk_size, **h)
    with pytest.raises(PyrozooError, match="chunk_size: expected an integer >= 1"):
        sparse_log_likelihood({"u": torch.zeros(1, 2, 5, dtype=DT)}, {"X": X, "y": y, "Z": Z, **h},
                              chunk_size=chunk_size)
    with pytest.raises(PyrozooError, match="checkpoint: expected True or False, got 'no'"):
        sparse_gp_stats(X, y, Z, kind="rbf", method=method, checkpoint="no", **h)
    # an integral float is still a chunk size: the same value as one chunk or the default
    full = sparse_log_marginal(X, y, Z, method=method, **h)
    torch.testing.assert_close(sparse_log_marginal(X, y, Z, method=method, chunk_size=7.0, **h), full,
                               rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("kind", ["rbf", "matern32", "matern52"])
def test_kernel_matrix_names_the_widths_of_x_and_z_when_they_differ(kind):
    """X (3, 2) against Z (2, 3) was a raw RuntimeError from torch (cat or cdist)."""
    one = torch.tensor(1.0, dtype=torch.float64)
    X, Z = torch.zeros(3, 2, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(PyrozooError, match=r"^X, Z: expected the same number of input dimensions \(columns\), got X "
                                           r"with 2 \(shape \(3, 2\)\) and Z with 3 \(shape \(2, 3\)\)$"):
        kernel_matrix(kind, X, Z, one, one)
    assert kernel_matrix(kind, X, X[:2], one, one).shape == (3, 2)


def test_jitter_and_its_gradient_follow_the_mean_diagonal():
    """jitter_cholesky factors A + r mean(diag A) I; the mean diagonal is no longer detached, so autograd through the
    factor sees the jitter move with A (it used to count as a constant). gaussian_log_density's hand-written
    backward adds the same term, (r / n) tr(G) I, also when a retry added the jitter (A singular here)."""
    from pyrozoo.models.gp_linalg import gaussian_log_density, jitter_cholesky_ex

    gen = torch.Generator().manual_seed(3)
    B = torch.randn(6, 3, generator=gen, dtype=DT)
    A0 = B @ B.T - 1e-9 * torch.eye(6, dtype=DT)  # rank 3, then indefinite: needs a retry
    y = torch.randn(6, generator=gen, dtype=DT)
    eye = torch.eye(6, dtype=DT)
    for jitter in (0.0, 1e-13):
        fac = jitter_cholesky_ex(A0, jitter=jitter)
        assert fac.retried and fac.rel > jitter
        torch.testing.assert_close(fac.L @ fac.L.T, A0 + fac.added * eye, rtol=1e-12, atol=1e-13)
        A = A0.clone().requires_grad_()
        value = gaussian_log_density(A, y, jitter=jitter)
        (grad,) = torch.autograd.grad(value, A)
        R = A0.clone().requires_grad_()
        ref = torch.distributions.MultivariateNormal(torch.zeros(6, dtype=DT),
                                                     R + fac.rel * R.diagonal().mean() * eye).log_prob(y)
        (ref_grad,) = torch.autograd.grad(ref, R)
        assert float(value.detach()) == pytest.approx(float(ref.detach()), rel=1e-9)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-6, atol=1e-6 * float(ref_grad.abs().max()))
        # autograd through jitter_cholesky itself: the same gradient
        C = A0.clone().requires_grad_()
        L = jitter_cholesky(C, jitter=jitter)
        alpha = torch.cholesky_solve(y.unsqueeze(-1), L).squeeze(-1)
        auto = -0.5 * (y * alpha).sum() - L.diagonal().log().sum() - 3 * math.log(2 * math.pi)
        (auto_grad,) = torch.autograd.grad(auto, C)
        torch.testing.assert_close(auto_grad, ref_grad, rtol=1e-6, atol=1e-6 * float(ref_grad.abs().max()))
    # the first attempt succeeding: nothing retried, the asked jitter reported
    fac = jitter_cholesky_ex(A0 + eye, jitter=1e-6)
    assert not fac.retried and fac.rel == 1e-6
    assert float(fac.added) == pytest.approx(1e-6 * float((A0 + eye).diagonal().mean()), rel=1e-12)
