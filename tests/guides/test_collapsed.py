"""Exactness of the collapsed (CIBER) predictive and of its Gaussian variant."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import optimize

from pyrozoo.errors import PyrozooError
from pyrozoo.guides.collapsed import (
    TAIL_WIDTH,
    TRIANGULAR_R,
    ciber_density,
    ciber_moments,
    ciber_sample,
    conditional_gaussian,
    gaussian_collapsed_moments,
    triangular_l2_distance,
    uniform_sum_density,
)


def test_r_minimizes_l2_distance_between_gaussian_and_triangle():
    res = optimize.minimize_scalar(triangular_l2_distance, bounds=(1.0, 4.0), method="bounded",
                                   options={"xatol": 1e-10})
    assert abs(res.x - 2.2970) < 5e-5
    assert TRIANGULAR_R == pytest.approx(res.x, abs=5e-5)
    # the closed form of the distance agrees with quadrature
    x = torch.linspace(-8, 8, 400001, dtype=torch.float64)
    phi = torch.exp(-x**2 / 2) / math.sqrt(2 * math.pi)
    tri = (1 / TRIANGULAR_R - x.abs() / TRIANGULAR_R**2).clamp_min(0)
    assert float(torch.trapezoid((phi - tri) ** 2, x)) == pytest.approx(triangular_l2_distance(TRIANGULAR_R), rel=1e-6)


def test_small_cases_match_closed_forms():
    # one uniform: 1/w inside; two equal uniforms: a triangle; Irwin-Hall n=3 at its centre: 3/4 (unit widths)
    t = torch.tensor([0.0, 0.2, 0.6], dtype=torch.float64)
    one = uniform_sum_density(t, torch.full((3, 1), 0.5, dtype=torch.float64))
    assert torch.allclose(one, torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    two = uniform_sum_density(t, torch.full((3, 2), 0.5, dtype=torch.float64))
    assert torch.allclose(two, (1 - t.abs()).clamp_min(0))
    three = uniform_sum_density(torch.zeros(1, dtype=torch.float64), torch.full((1, 3), 0.5, dtype=torch.float64))
    assert float(three) == pytest.approx(0.75, rel=1e-14)
    cdf = uniform_sum_density(torch.zeros(1, dtype=torch.float64), torch.full((1, 5), 0.3, dtype=torch.float64),
                              cdf=True)
    assert float(cdf) == pytest.approx(0.5, rel=1e-14)


def _example(k: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    box = 0.05 + 0.4 * torch.rand(k, generator=gen, dtype=torch.float64)
    return torch.tensor(0.3, dtype=torch.float64), box, torch.tensor(0.5, dtype=torch.float64)


def test_density_integrates_to_one_and_matches_moments():
    center, box, sigma = _example()
    half = float(box.sum() + TRIANGULAR_R * sigma)
    y = torch.linspace(float(center) - half - 0.1, float(center) + half + 0.1, 8001, dtype=torch.float64)
    p = ciber_density(y, center, box, sigma)
    assert float(torch.trapezoid(p, y)) == pytest.approx(1.0, abs=1e-7)
    mean, var = ciber_moments(center, box, sigma)
    assert float(torch.trapezoid(p * y, y)) == pytest.approx(float(mean), abs=1e-7)
    assert float(torch.trapezoid(p * (y - mean) ** 2, y)) == pytest.approx(float(var), rel=1e-6)


def _triangular_cdf(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 0, (x + a).clamp_min(0) ** 2 / (2 * a * a), 1 - (a - x).clamp_min(0) ** 2 / (2 * a * a))


def _monte_carlo_density(points, center, box, components, n: int, seed: int):
    """Reference density at ``points`` and its sample sd: 10^6 draws of all box weights but the widest; the widest
    box and each triangle ``(weight, half-width a)`` of ``components`` integrated through the triangular CDF
    (p = E[sum_c w_c (F_c(z + b_1) - F_c(z - b_1)) / (2 b_1)]), with control variates S, S^2, S^4 (S the sum of the
    drawn uniforms, known moments)."""
    j = int(box.argmax())
    rest, b1 = torch.cat([box[:j], box[j + 1:]]), box[j]
    gen = torch.Generator().manual_seed(seed)
    S = ((2 * torch.rand(n, len(rest), generator=gen, dtype=torch.float64) - 1) * rest).sum(-1)
    z = points[None] - center - S[:, None]
    val = sum(w * (_triangular_cdf(z + b1, a) - _triangular_cdf(z - b1, a)) / (2 * b1) for w, a in components)
    m2 = (rest**2).sum() / 3
    m4 = (rest**4).sum() / 5 + 3 * (m2**2 - (rest**4).sum() / 9)
    cv = torch.stack([S, S**2 - m2, S**4 - m4], -1)
    beta = torch.linalg.lstsq(cv - cv.mean(0), val - val.mean(0)).solution
    resid = val - cv @ beta
    return resid.mean(0), resid.std(0) / math.sqrt(n), gen


def test_density_agrees_with_a_million_monte_carlo_draws():
    """Independent reference: 10^6 draws of all box weights but the widest; the widest box and the triangular
    noise are integrated by hand (p = E[(F_T(z + b_1) - F_T(z - b_1)) / (2 b_1)], F_T the triangular CDF), with
    control variates S, S^2, S^4 (S the sum of the drawn uniforms, known moments). The sample sd of the estimate
    is checked to be < 2.5e-4 relative, so the 1e-3 tolerance is at least 4 Monte Carlo sds."""
    center, box, sigma = _example()
    points = torch.tensor([0.3, 0.0, 0.6, -0.2, 1.0], dtype=torch.float64)
    exact = ciber_density(points, center, box, sigma)
    n = 1_000_000
    est, sd, gen = _monte_carlo_density(points, center, box, [(1.0, TRIANGULAR_R * sigma)], n, seed=1)
    assert (sd / exact < 2.5e-4).all()
    assert ((est - exact).abs() / exact < 1e-3).all(), (est - exact) / exact
    # and the plain sampler draws from the same law (mean and variance, 5 MC sds)
    y = ciber_sample(center, box, sigma, n, generator=gen)
    mean, var = ciber_moments(center, box, sigma)
    assert abs(float(y.mean() - mean)) < 5 * math.sqrt(float(var) / n)
    assert abs(float(y.var() / var) - 1) < 5 * math.sqrt(2 / n) * 1.2


def test_triangle_mixture_integrates_to_one_and_matches_monte_carlo():
    """Our tail variant (1 - rho) Tri(r sigma) + rho Tri(3 r sigma): quadrature (mass, mean, variance) and an
    independent reference of 10^6 draws per component (box weights but the widest drawn, the widest box and the
    triangle integrated through the triangular CDF, control variates as above), 1e-3 relative."""
    center, box, sigma = _example()
    rho = 0.2
    half = float(box.sum() + TAIL_WIDTH * TRIANGULAR_R * sigma)
    y = torch.linspace(float(center) - half - 0.1, float(center) + half + 0.1, 16001, dtype=torch.float64)
    p = ciber_density(y, center, box, sigma, tail_weight=rho)
    assert float(torch.trapezoid(p, y)) == pytest.approx(1.0, abs=1e-7)
    mean, var = ciber_moments(center, box, sigma, tail_weight=rho)
    assert float(torch.trapezoid(p * y, y)) == pytest.approx(float(mean), abs=1e-7)
    assert float(torch.trapezoid(p * (y - mean) ** 2, y)) == pytest.approx(float(var), rel=1e-6)
    # support: beyond the narrow triangle's reach only the wide component is left (positive density)
    far = center + box.sum() + TRIANGULAR_R * sigma + 0.5
    assert float(ciber_density(far, center, box, sigma)) == 0.0
    assert float(ciber_density(far, center, box, sigma, tail_weight=rho)) > 0.0
    points = torch.tensor([0.3, -0.4, 1.0, 1.6, 4.0], dtype=torch.float64)  # 4.0: the wide triangle only
    exact = ciber_density(points, center, box, sigma, tail_weight=rho)
    n = 1_000_000
    components = [(1 - rho, TRIANGULAR_R * sigma), (rho, TAIL_WIDTH * TRIANGULAR_R * sigma)]
    est, sd, gen = _monte_carlo_density(points, center, box, components, n, seed=2)
    assert (sd / exact < 2.5e-4).all()
    assert ((est - exact).abs() / exact < 1e-3).all(), (est - exact) / exact
    # the sampler draws the wide component with probability rho: mean, variance and the tail mass beyond 2.0
    draws = ciber_sample(center, box, sigma, n, tail_weight=rho, generator=gen)
    assert abs(float(draws.mean() - mean)) < 5 * math.sqrt(float(var) / n)
    assert abs(float(draws.var() / var) - 1) < 5 * math.sqrt(2 / n) * 1.5
    tail = float(torch.trapezoid(torch.where(y > 2.0, p, 0.0), y))
    assert abs(float((draws > 2.0).double().mean()) - tail) < 5 * math.sqrt(tail / n)


def test_triangle_mixture_bad_arguments():
    center, box, sigma = _example()
    with pytest.raises(PyrozooError, match="tail_weight"):
        ciber_density(center, center, box, sigma, tail_weight=1.0)
    with pytest.raises(PyrozooError, match="tail_width"):
        ciber_moments(center, box, sigma, tail_weight=0.1, tail_width=0.5)


def test_ill_conditioned_widths_are_computed_accurately():
    """Widths spread over five decades make the float64 inclusion-exclusion sum cancel; the mpmath fallback keeps
    the result equal to a direct convolution on a fine grid."""
    widths = torch.tensor([[1.0, 3e-3, 1e-3, 2e-4, 5e-5, 0.4]], dtype=torch.float64)
    t = torch.tensor([0.1], dtype=torch.float64)
    p = uniform_sum_density(t, widths)
    # narrow boxes change the density of U(-1,1) + U(-.4,.4) (flat 0.5 on |t| < 0.6) by nothing at t = 0.1
    assert float(p) == pytest.approx(0.5, rel=1e-9)
    p2 = uniform_sum_density(torch.tensor([1.3], dtype=torch.float64), widths)
    assert float(p2) == pytest.approx(0.5 * (1.4 - 1.3) / 0.8, rel=1e-6)


def test_merged_equal_width_pair_matches_the_full_sign_sum():
    """A pair of equal widths uses 3 offsets (1, -2, 1) instead of 4 signs: same values as the plain 2^m sum."""
    from pyrozoo.guides.collapsed import _sign_table

    gen = torch.Generator().manual_seed(5)
    widths = 0.1 + torch.rand(40, 6, generator=gen, dtype=torch.float64)
    widths[:, 4] = widths[:, 5]  # the pair
    t = 1.5 * torch.randn(40, generator=gen, dtype=torch.float64)
    merged = uniform_sum_density(t, widths)
    M, coef = _sign_table(6, -1)
    assert _sign_table(6, 4)[0].shape[0] == 3 * 2**4
    x = t[:, None] + widths @ M.T
    plain = (coef * x.abs() ** 5).sum(-1) / (2 * math.factorial(5) * (2 * widths).prod(-1))  # odd power: |x|^5
    plain = torch.where(t.abs() >= widths.sum(-1), torch.zeros_like(plain), plain)
    assert torch.allclose(merged, plain, rtol=1e-10, atol=1e-12)


def test_tail_values_through_the_one_sided_form_and_mpmath_are_exact():
    """With a tight tolerance every value goes through the fallback chain (one-sided form at -|t|, then mpmath):
    density and CDF agree with mpmath at 60+ digits to 1e-10 relative, tails included."""
    from pyrozoo.guides.collapsed import _mp_density

    gen = torch.Generator().manual_seed(3)
    for cdf in (False, True):
        w = 0.05 + torch.rand(60, 7, generator=gen, dtype=torch.float64)
        w[:, 6] = w[:, 5]
        t = (2 * torch.rand(60, generator=gen, dtype=torch.float64) - 1) * w.sum(-1) * 0.999
        ref = torch.tensor([_mp_density(float(t[i]), w[i].tolist(), cdf) for i in range(60)], dtype=torch.float64)
        got = uniform_sum_density(t, w, cdf=cdf, rel_tol=1e-12)
        assert torch.allclose(got, ref, rtol=1e-10, atol=0.0)


def _exact_box_spline(t: float, widths: list[float]) -> float:
    """Reference density of a sum of centred uniforms in exact integer arithmetic: floats are dyadic rationals, so
    with L a common power-of-2 denominator, p(t) = sum_s prod(s) (L t + s . L b)_+^(m-1) / (L^(m-1) (m-1)! prod 2b)
    (the one-sided inclusion-exclusion formula at t itself; no rounding until the final division)."""
    from fractions import Fraction

    vals = [Fraction(v) for v in (t, *widths)]
    L = max(v.denominator for v in vals)
    T, B = (int(v * L) for v in vals[:1]), [int(v * L) for v in vals[1:]]
    T, m = next(T), len(B)
    terms = [(T, 1)]  # (t + s . b, prod(s)) over all 2^m sign vectors, in units of 1 / L
    for b in B:
        terms = [(x + sb, sign * sg) for x, sign in terms for sb, sg in ((b, 1), (-b, -1))]
    acc = sum(sign * x ** (m - 1) for x, sign in terms if x > 0)
    return float(Fraction(acc, L ** (m - 1) * math.factorial(m - 1) * math.prod(2 * Fraction(v) for v in widths)))


@pytest.mark.parametrize("case", ["k8", "k12-equal"])
def test_far_tail_density_is_exact_monotone_and_positive(case):
    """Far tail, 4% to 1e-9 of the support from its edge: the density matches an exact rational evaluation to
    the 1e-4 relative rounding bound (before, values whose bound was small next to the peak were accepted however
    large their relative error: 0 inside the support, or 1e-12 where the truth is 1e-20), decreases strictly toward
    the edge on both sides, and its log is finite."""
    if case == "k8":  # the QA reproducer
        box = torch.rand(8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.9 + 0.1
    else:
        box = torch.full((12,), 0.5, dtype=torch.float64)
    sigma = torch.tensor([0.3], dtype=torch.float64)
    total = float(box.sum()) + TRIANGULAR_R * 0.3
    gaps = torch.tensor([4e-2, 3e-2, 1e-2, 5e-3, 1e-3, 1e-4, 1e-6, 1e-9], dtype=torch.float64)
    t = torch.cat([(1 - gaps) * total, -(1 - gaps) * total])
    p = ciber_density(t, torch.zeros(1, dtype=torch.float64), box[None], sigma)
    widths = box.tolist() + [0.5 * TRIANGULAR_R * 0.3] * 2
    ref = torch.tensor([_exact_box_spline(float(v), widths) for v in t], dtype=torch.float64)
    assert (ref > 0).all()
    assert torch.allclose(p, ref, rtol=1e-4, atol=0.0), (p / ref - 1)
    assert torch.isfinite(p.log()).all()
    n = gaps.numel()
    for side in (p[:n], p[n:]):
        assert (side[1:] < side[:-1]).all(), side


def test_gaussian_conditional_and_collapsed_predictive_match_dense_formulas():
    gen = torch.Generator().manual_seed(2)
    P, K = 7, 3
    mean = torch.randn(P, generator=gen, dtype=torch.float64)
    d = 0.1 + torch.rand(P, generator=gen, dtype=torch.float64)
    L = 0.5 * torch.randn(P, K, generator=gen, dtype=torch.float64)
    cov = torch.diag(d) + L @ L.T
    collapsed = torch.tensor([1, 4, 6])
    w = mean + torch.randn(5, P, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    cm, cc = conditional_gaussian(mean, d, L, collapsed, w)
    keep = torch.tensor([i for i in range(P) if i not in collapsed.tolist()])
    S_cs, S_ss = cov[collapsed][:, keep], cov[keep][:, keep]
    ref_mean = mean[collapsed] + (w[:, keep] - mean[keep]) @ torch.linalg.solve(S_ss, S_cs.T)
    ref_cov = cov[collapsed][:, collapsed] - S_cs @ torch.linalg.solve(S_ss, S_cs.T)
    assert torch.allclose(cm, ref_mean, atol=1e-12) and torch.allclose(cc, ref_cov, atol=1e-12)
    phi = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    m, v = gaussian_collapsed_moments(torch.tensor(1.0, dtype=torch.float64), phi, cc,
                                      torch.tensor(0.3, dtype=torch.float64))
    assert float(v) == pytest.approx(float(phi @ cc @ phi + 0.09), rel=1e-12)
    assert float(m) == 1.0


def test_too_many_collapsed_weights_is_an_error():
    with pytest.raises(PyrozooError, match="num_collapsed"):
        ciber_density(torch.zeros(1), torch.zeros(1), torch.ones(1, 13), torch.ones(1))


@pytest.mark.parametrize("case", ["scalar_sigma", "as_many_draws_as_points", "full_sigma", "shared_box",
                                  "tail_scalar_sigma"])
def test_sampler_draws_each_point_independently_for_a_broadcast_sigma(case):
    """ciber_sample's draws per point have ciber_moments' mean and variance when sigma (or the box half-widths)
    broadcast to the batch, as ciber_density and ciber_moments accept. A scalar sigma used to shape the triangle
    noise like sigma, so it broadcast along the batch: with num_samples == batch size each point got one fixed
    noise value (sample variance 0.0068 vs 0.886), with any other num_samples a raw RuntimeError. Tolerance: the
    sample variance of N draws has relative sd sqrt((kurtosis - 1) / N) <= sqrt(2 / N) (the sum of uniforms and
    triangles is platykurtic; the tail mixture's kurtosis is < 4, so sqrt(3 / N) there); 5 sds for each
    point (50, or 1000 with N = 1000), the mean within 5 sds sqrt(var / N)."""
    gen = torch.Generator().manual_seed(7)
    n, N = (1000, 1000) if case == "as_many_draws_as_points" else (50, 4000)
    center = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    box = 0.05 + 0.5 * torch.rand(n, 2, generator=gen, dtype=torch.float64)
    sigma = torch.tensor(1.0, dtype=torch.float64)
    rho = 0.0
    if case == "full_sigma":
        sigma = 0.2 + torch.rand(n, generator=gen, dtype=torch.float64)
    elif case == "shared_box":
        box, sigma = box[0], 0.2 + torch.rand(n, generator=gen, dtype=torch.float64)
    elif case == "tail_scalar_sigma":
        rho = 0.2
    y = ciber_sample(center, box, sigma, N, tail_weight=rho, generator=gen)
    assert y.shape == (N, n)
    mean, var = ciber_moments(center, box, sigma, tail_weight=rho)
    kurt_bound = 3.0 if rho else 2.0
    assert ((y.mean(0) - mean).abs() < 5 * (var / N).sqrt()).all()
    assert ((y.var(0) / var - 1).abs() < 5 * math.sqrt(kurt_bound / N)).all(), y.var(0) / var
