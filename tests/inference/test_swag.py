"""SWAG: the collector's statistics, sampling, and the posterior of Bayesian linear regression."""

from __future__ import annotations

import math

import pyro.poutine as poutine
import pytest
import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.guides.swag import SWAGGuide
from pyrozoo.inference.swag import SWAGCollector, SWAGPosterior, run_swag, swa_learning_rate


def test_collector_matches_batch_statistics():
    gen = torch.Generator().manual_seed(0)
    thetas = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    col = SWAGCollector(4, rank=5)
    for t in thetas:
        col.collect(t)
    assert torch.allclose(col.mean, thetas.mean(0), atol=1e-12)
    assert torch.allclose(col.sq_mean, (thetas**2).mean(0), atol=1e-12)
    assert len(col.deviations) == 5
    running = [thetas[: i + 1].mean(0) for i in range(30)]
    assert torch.allclose(col.deviations[-1], thetas[-1] - running[-1], atol=1e-12)
    assert torch.allclose(col.deviations[0], thetas[25] - running[25], atol=1e-12)
    post = col.posterior(scale=0.5)
    D = torch.stack(col.deviations, 1)
    expected = torch.diag(thetas.var(0, unbiased=False)) / 2 + D @ D.T / (2 * 4)  # the paper's Sigma
    assert torch.allclose(post.covariance(), expected, atol=1e-12)
    diag = col.posterior(diagonal=True, scale=0.5)
    assert torch.allclose(diag.covariance(), 0.5 * torch.diag(thetas.var(0, unbiased=False)), atol=1e-12)


def test_samples_have_the_stated_covariance_and_guide_sites():
    gen = torch.Generator().manual_seed(1)
    post = SWAGPosterior(torch.arange(3.0, dtype=torch.float64), torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64),
                         torch.randn(3, 4, generator=gen, dtype=torch.float64), scale=0.5)
    n = 200_000
    draws = post.sample(n, generator=gen)
    cov = post.covariance()
    # sd of a sample covariance entry: sqrt((S_ii S_jj + S_ij^2) / n); 5 sds
    tol = 5 * ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    assert ((torch.cov(draws.T) - cov).abs() < tol).all()
    guide = SWAGGuide(post, {"a": (1,), "b": (2,)}, dtype=torch.float64)
    tr = poutine.trace(guide).get_trace()
    assert tr.nodes["a"]["value"].shape == (1,) and tr.nodes["b"]["value"].shape == (2,)
    with pytest.raises(PyrozooError, match="site_shapes"):
        SWAGGuide(post, {"a": (2,)})


def test_swa_schedule_uses_swa_lr_in_every_collecting_epoch():
    assert swa_learning_rate(0, lr=0.1, swa_lr=0.01, swa_start=10) == 0.1
    assert swa_learning_rate(7, lr=0.1, swa_lr=0.01, swa_start=10) == pytest.approx(0.1 - 0.09 * 0.2 / 0.4)
    for epoch, start in ((10, 10), (12, 10), (0, 0), (3, 0)):  # collecting epochs: epoch >= swa_start
        assert swa_learning_rate(epoch, lr=0.1, swa_lr=0.01, swa_start=start) == 0.01


def test_too_few_iterates_is_an_error():
    col = SWAGCollector(2, rank=3)
    col.collect(torch.zeros(2))
    with pytest.raises(PyrozooError, match="at least 2"):
        col.posterior()


def _linear_regression(n: int = 200, p: int = 3, sigma: float = 1.0, tau: float = 10.0, seed: int = 0):
    """Orthogonal design with X^T X = n I, so the exact posterior N(mu, Sigma) is isotropic:
    Sigma = 1 / a I, a = n / sigma^2 + 1 / tau^2, mu = X^T y / (sigma^2 a)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, p, generator=gen, dtype=torch.float64))
    X = q * math.sqrt(n)
    y = X @ torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64) + sigma * torch.randn(n, generator=gen,
                                                                                         dtype=torch.float64)
    a = n / sigma**2 + 1 / tau**2
    return X, y, X.T @ y / (sigma**2 * a), 1.0 / a


def test_swag_recovers_the_linear_regression_posterior():
    """Constant-lr SGD with i.i.d. minibatches of size B is an AR(1) process around the mode: on U (the negative log
    posterior) with step eps, theta' - mu = (1 - eps a)(theta - mu) - eps xi, Cov(xi) = C = N^2 / (B sigma^2) I
    (per-example gradient covariance I / sigma^2 for this design). Its stationary variance eps C / (2a - eps a^2)
    equals the posterior's 1 / a when eps = 2 / (C + a) (Mandt et al. 2017): SWAG should then recover mean and
    covariance. Tolerances: 4 Monte Carlo sds of the SWA estimates (effective sample size from the AR(1)
    autocorrelation at the collection lag), plus 5% for the theory's approximations (residual variance, O(B/N))."""
    N, B, sigma = 200, 10, 1.0
    X, y, mu, v = _linear_regression(N, sigma=sigma)
    a = 1.0 / v
    eps = 2.0 / (N**2 / (B * sigma**2) + a)
    lr = eps * N  # the loss below is U / N

    def loss(theta, idx):
        return 0.5 * ((y[idx] - X[idx] @ theta) ** 2).mean() / sigma**2 + 0.5 * (theta**2).sum() / (100.0 * N)

    collect_every, swa_epochs = 20, 500
    run = run_swag(loss, mu.clone(), N, epochs=5, swa_epochs=swa_epochs, batch_size=B, lr=lr, swa_lr=lr,
                   momentum=0.0, rank=100, with_replacement=True, seed=3)
    rho = (1 - eps * a) ** collect_every
    n_eff = run.collector.count * (1 - rho) / (1 + rho)
    # mean: within 4 sds of the SWA average
    assert ((run.collector.mean - mu).abs() < 4 * math.sqrt(v / n_eff) + 0.05 * math.sqrt(v)).all()
    # SWAG-diagonal, scale 1: the variance of the iterates
    diag = run.collector.posterior(diagonal=True, scale=1.0).covariance()
    tol_var = 4 * math.sqrt(2 / n_eff) + 0.05
    assert ((diag.diagonal() / v - 1).abs() < tol_var).all(), diag.diagonal() / v
    # SWAG (low-rank + diagonal, scale 0.5: the paper's average of the two estimates): the rank-100 part adds
    # sampling noise sqrt(2 / 100) per entry
    full = run.collector.posterior(scale=0.5).covariance()
    tol_full = 0.5 * tol_var + 0.5 * 4 * math.sqrt(2 / 100)
    assert ((full.diagonal() / v - 1).abs() < tol_full).all(), full.diagonal() / v
    off = full - torch.diag(full.diagonal())
    assert (off.abs() / v < 0.5 * 4 * math.sqrt(1 / 100)).all()


def test_transform_of_standard_normals_has_the_swag_mean_and_covariance():
    """transform(z), z ~ N(0, I_{P+K}) (the map sample applies), has mean theta_bar and covariance
    scale * (diag(v) + D D^T / (K - 1)), the SWAG formula evaluated here from the iterates themselves (batch
    mean and variance, deviations from the running means), not from the posterior's factors. The iterates are spread
    (sd 4 to 6) so the diagonal part d = scale * v is far from 1 (asserted > 2): a draw scaled by d instead of
    sqrt(d) has a variance off by d^2 - d > 2, many Monte Carlo sds. Tolerances: 5 Monte Carlo sds with
    n = 100000 draws, sqrt(S_ii / n) for a mean entry and sqrt((S_ii S_jj + S_ij^2) / n) for a covariance entry."""
    gen = torch.Generator().manual_seed(7)
    P, K, T, scale = 3, 4, 60, 0.5
    sd = torch.tensor([4.0, 5.0, 6.0], dtype=torch.float64)
    thetas = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + sd * torch.randn(T, P, generator=gen,
                                                                                   dtype=torch.float64)
    col = SWAGCollector(P, rank=K)
    for t in thetas:
        col.collect(t)
    post = col.posterior(scale=scale)

    mean = thetas.mean(0)
    var = (thetas**2).mean(0) - mean**2
    running = torch.cumsum(thetas, 0) / torch.arange(1, T + 1, dtype=torch.float64)[:, None]
    D = (thetas - running)[-K:].T  # (P, K): the last K deviations from the mean at collection time
    cov = scale * (torch.diag(var) + D @ D.T / (K - 1))
    assert (scale * var > 2).all()  # the diagonal part is large enough to tell d from sqrt(d)

    n = 100_000
    draws = post.transform(torch.randn(n, P + K, generator=gen, dtype=torch.float64))
    assert draws.shape == (n, P)
    assert ((draws.mean(0) - mean).abs() < 5 * (cov.diagonal() / n).sqrt()).all()
    tol = 5 * ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    assert ((torch.cov(draws.T) - cov).abs() < tol).all(), (torch.cov(draws.T), cov)


def test_bad_scale_and_iterate_are_refused_naming_them():
    """posterior(scale=-1.0) failed at the first draw in math.sqrt ("math domain error") and scale=0.0 gave an
    all-zero covariance silently; an iterate of the wrong length was a raw RuntimeError inside the running mean."""
    col = SWAGCollector(3, rank=2)
    for theta in torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64):
        col.collect(theta)
    for scale in (-1.0, 0.0, float("inf"), float("nan"), "0.5"):
        with pytest.raises(PyrozooError, match="^scale: expected a finite value > 0"):
            col.posterior(scale=scale)
        with pytest.raises(PyrozooError, match="^scale: expected a finite value > 0"):
            SWAGPosterior(col.mean, col.mean.abs(), torch.zeros(3, 2, dtype=torch.float64), scale=scale)
    assert col.posterior(scale=2.0).sample(2).shape == (2, 3)
    with pytest.raises(PyrozooError, match=r"^theta: expected a flat tensor of 3 values \(the collector's "
                                           r"num_params\), got shape \(4,\)$"):
        SWAGCollector(3).collect(torch.randn(4))
    with pytest.raises(PyrozooError, match=r"^theta: expected a flat tensor of 3 values .*got shape \(1, 3\)$"):
        col.collect(torch.randn(1, 3))
    assert col.count == 4  # nothing was added by the refused iterates
    with pytest.raises(PyrozooError, match="^num_params: expected an integer >= 1, got 0"):
        SWAGCollector(0)


def test_run_swag_refuses_bad_arguments_before_any_step():
    """A (2, 3) theta_init ran every SGD epoch (105 loss calls) and was refused at the first collection, naming the
    collector's ``theta``; too few SWA iterates (swa_epochs=1, or collect_every past the SWA phase) were refused after
    all the epochs; an integer theta_init and a text seed were raw torch/int() errors."""
    y = torch.randn(50, generator=torch.Generator().manual_seed(0))
    calls = [0]

    def loss(theta, idx):
        calls[0] += 1
        return ((y[idx, None] - theta) ** 2).mean()

    kw = dict(epochs=20, swa_epochs=3, batch_size=10)
    cases = [
        ((torch.zeros(2, 3), 50), kw, r"^theta_init: expected a flat \(1-D, non-empty\) floating-point tensor .*"
                                      r"got a torch.float32 tensor of shape \(2, 3\)$"),
        ((torch.zeros(3, dtype=torch.long), 50), kw, r"^theta_init: .*got a torch.int64 tensor of shape \(3,\)$"),
        ((torch.zeros(0), 50), kw, r"^theta_init: .*got a torch.float32 tensor of shape \(0,\)$"),
        (([0.0, 0.0], 50), kw, r"^theta_init: .*got list$"),
        ((torch.zeros(3), 50), {**kw, "swa_epochs": 1},
         r"^swa_epochs: expected an SWA phase that collects at least 2 iterates \(SWAG needs 2\), got 1: "
         r"swa_epochs=1 x 5 steps per epoch = 5 steps"),
        ((torch.zeros(3), 50), {**kw, "collect_every": 100},
         r"^swa_epochs, collect_every: expected .* at least 2 iterates .*got 0: .*one every collect_every=100 steps"),
        ((torch.zeros(3), 50), {**kw, "seed": "a"}, r"^seed: expected an integer seed"),
        ((torch.zeros(3), 50), {**kw, "seed": -1}, r"^seed: expected an integer seed"),
        ((torch.zeros(3), 50), {**kw, "with_replacement": "no"}, r"^with_replacement: expected True or False"),
    ]
    for args, kwargs, match in cases:
        with pytest.raises(PyrozooError, match=match):
            run_swag(loss, *args, **kwargs)
    with pytest.raises(PyrozooError, match=r"^loss_fn: expected a callable"):
        run_swag(None, torch.zeros(3), 50, **kw)
    assert calls[0] == 0  # every refusal came before the first SGD step


@pytest.mark.parametrize("num_data, batch_size, epochs, swa_epochs, collect_every", [
    (50, 10, 2, 2, None), (50, 10, 2, 1, 2), (7, 3, 1, 2, 4), (7, 3, 3, 1, 2), (5, 5, 0, 2, None), (9, 4, 2, 3, 5),
])
def test_the_up_front_collection_count_is_what_the_run_collects(num_data, batch_size, epochs, swa_epochs,
                                                                 collect_every):
    """The count run_swag now checks before training (floor((E + A) S / c) - floor(E S / c)) is the number of
    iterates the loop collects; a run it lets through has at least 2."""
    run = run_swag(lambda theta, idx: (theta**2).sum(), torch.ones(2), num_data, epochs=epochs,
                   swa_epochs=swa_epochs, batch_size=batch_size, collect_every=collect_every)
    S = -(-num_data // batch_size)
    c = S if collect_every is None else collect_every
    assert run.collector.count == ((epochs + swa_epochs) * S) // c - (epochs * S) // c >= 2


def test_default_scale_gives_the_papers_covariance_and_agrees_with_swag_diagonal():
    """Maddox et al.'s SWAG covariance is (Sigma_diag + Sigma_low-rank) / 2 with Sigma_diag = diag(v) and
    Sigma_low-rank = D D^T / (K - 1); the authors' code draws it with scale 0.5, and their SWAG-diagonal at that
    scale is diag(v) / 2. The default scale 0.5 gave half of that for the full form (diag(v) / 4 + D D^T / (4 (K -
    1))), so the two SWAG forms disagreed on the diagonal part by 2x. Exact identities on fixed iterates."""
    gen = torch.Generator().manual_seed(0)
    col = SWAGCollector(3, rank=5)
    thetas = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    for t in thetas:
        col.collect(t)
    var = col.sq_mean - col.mean**2
    D = torch.stack(col.deviations, 1)
    K = D.shape[1]
    paper = (torch.diag(var) + D @ D.T / (K - 1)) / 2
    torch.testing.assert_close(col.posterior().covariance(), paper, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(col.posterior(diagonal=True).covariance(), torch.diag(var) / 2, rtol=1e-12, atol=0)
    d_full, _ = col.posterior().factors()
    d_diag, _ = col.posterior(diagonal=True).factors()
    torch.testing.assert_close(d_full, d_diag, rtol=1e-12, atol=0)
