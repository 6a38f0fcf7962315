"""PLCE pass 4 options: the orthogonal (doubly robust) final stage with a cross-fitted varying effect, and the
weighted second-pass nuisance refit. Tolerances are stated next to each check with where they come from."""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from pyrozoo.causal.crossfit import make_folds
from pyrozoo.causal.extensions import RandomInterceptLearner
from pyrozoo.causal.plce import PLCE, orthogonal_effect, varying_effect, wls_hc3
from pyrozoo.causal.simulate import simulate_plce


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def test_orthogonal_effect_equals_wls_for_a_constant_effect_function():
    """With th(x) = c constant, mean(th) + sum w rt (ry - c rt) / sum w rt^2 is the WLS coefficient for any c, and
    the influence-function variance is the HC0 sandwich times n / (n - 1) (HC3 differs by the leverage terms,
    O(1/n) here: within 2%)."""
    rng = np.random.default_rng(0)
    n = 500
    rt = rng.standard_normal(n)
    ry = 1.3 * rt + rng.standard_normal(n) * (1 + np.abs(rt))
    w = rng.uniform(0.5, 2.0, n)
    b, V = wls_hc3(rt, ry, w)
    for c in (0.0, 0.7, 5.0):
        theta, var = orthogonal_effect(ry, rt, w, np.full(n, c))
        assert theta == pytest.approx(b[0], abs=1e-12)
        assert math.sqrt(var) == pytest.approx(math.sqrt(V[0, 0]), rel=0.02)
    g = np.arange(n) // 10
    theta_c, var_c = orthogonal_effect(ry, rt, w, np.full(n, 0.7), clusters=g)
    _, Vc = wls_hc3(rt, ry, w, clusters=g)
    assert theta_c == pytest.approx(b[0], abs=1e-12)
    assert math.sqrt(var_c) == pytest.approx(math.sqrt(Vc[0, 0]), rel=0.02)  # CR1 vs n/(n-1)-free: O(1/n)


def test_orthogonal_variance_is_the_exact_sandwich_for_a_constant_effect_function():
    """With th = c the score is psi_i = n w_i rt_i u_i / sum w rt^2 (u = ry - b rt), so the variance is exactly the
    HC0 sandwich times n / (n - 1), and with clusters the CR sandwich sum_g (sum_g w rt u)^2 / (sum w rt^2)^2 times
    G / (G - 1) (float64 round-off only: rel 1e-10)."""
    rng = np.random.default_rng(1)
    n = 200
    rt = rng.standard_normal(n)
    ry = 0.8 * rt + rng.standard_normal(n) * (1 + rt**2)
    w = rng.uniform(0.5, 2.0, n)
    den = (w * rt**2).sum()
    b = (w * rt * ry).sum() / den
    u = ry - b * rt
    hc0 = (w**2 * rt**2 * u**2).sum() / den**2
    _, var = orthogonal_effect(ry, rt, w, np.full(n, 0.3))
    assert var == pytest.approx(hc0 * n / (n - 1), rel=1e-10)
    g = np.arange(n) // 8
    G = g.max() + 1
    sums = np.bincount(g, weights=w * rt * u)
    _, var_c = orthogonal_effect(ry, rt, w, np.full(n, 0.3), clusters=g)
    assert var_c == pytest.approx((sums**2).sum() / den**2 * G / (G - 1), rel=1e-10)


def test_orthogonal_score_removes_the_weight_error_bias():
    """Heterogeneous effect theta(x) = 1 + 3 x^2 (average 2 for x ~ U(-1, 1)), Var(v | x) = s2 = 0.2 + 2 x^2, and
    wrong weights 1 / s2_hat with s2_hat = s2 exp(x^2), which down-weight the units with large effects. The weighted
    residual-on-residual coefficient then targets E[theta s2 / s2_hat] / E[s2 / s2_hat] = 1.76 (not 2): over 300
    data sets (n = 400) its mean is > 10 MCSE below 2. The orthogonal score with a cross-fitted R-learner th(x) on
    [1, x, x^2] is unbiased up to a product of errors: its mean is within 3 MCSE of 2, and its mean SE matches the
    sd of the estimates within 15% (MC error of an sd from 300 draws ~4%)."""
    rng = np.random.default_rng(1)
    n, reps = 400, 300
    folds = make_folds(n, 5, 1, seed=0)[0]
    wls, orth, ses = [], [], []
    for _ in range(reps):
        x = rng.uniform(-1, 1, n)
        s2 = 0.2 + 2 * x**2
        v = np.sqrt(s2) * rng.standard_normal(n)
        ry = (1 + 3 * x**2) * v + 0.5 * rng.standard_normal(n)
        w = 1.0 / (s2 * np.exp(x**2))
        wls.append(float((w * v * ry).sum() / (w * v**2).sum()))
        th = varying_effect(ry, v, np.column_stack([x, x**2]), folds, w)
        est, var = orthogonal_effect(ry, v, w, th)
        orth.append(est)
        ses.append(math.sqrt(var))
    wls, orth = np.array(wls), np.array(orth)
    mcse = orth.std(ddof=1) / math.sqrt(reps)
    assert wls.mean() < 2 - 10 * wls.std(ddof=1) / math.sqrt(reps)
    assert abs(orth.mean() - 2) < 3 * mcse
    assert np.mean(ses) == pytest.approx(orth.std(ddof=1), rel=0.15)


def test_varying_effect_scales_with_the_units():
    """th(x) is an effect (y per t): with ry * c and rt * c' it must scale by c / c' exactly (up to rounding). The
    ridge penalty grid on raw rt * [1, f] meant another penalty in other units (th moved by a few percent)."""
    rng = np.random.default_rng(2)
    n = 300
    x = rng.uniform(-1, 1, n)
    v = np.sqrt(0.2 + 2 * x**2) * rng.standard_normal(n)
    ry = (1 + 3 * x**2) * v + 0.5 * rng.standard_normal(n)
    folds = make_folds(n, 5, 1, seed=0)[0]
    F, w = np.column_stack([x, x**2]), 1.0 / (0.2 + 2 * x**2)
    th = varying_effect(ry, v, F, folds, w)
    for cy, ct in ((1e4, 1e-4), (1.0, 1e3), (1e-3, 1.0)):
        assert np.allclose(varying_effect(cy * ry, ct * v, F, folds, w), th * cy / ct, rtol=1e-9, atol=0)
    assert np.allclose(varying_effect(ry, v, F, folds, 7.0 * w), th, rtol=1e-9, atol=0)  # weights' scale


def test_orthogonal_stage_is_equivariant_to_units_and_offsets():
    """final_stage="orthogonal" on one data set: theta_ and se_ scale as y / t and ignore an offset of a covariate
    (the QA report: 2.1138 at base units, 2.1514e8 with y * 1e4, t * 1e-4). Tolerances: rel 1e-9 for a rescaling,
    1e-6 for the offset (rounding of x + 1e6)."""
    rng = np.random.default_rng(0)
    n = 150
    X = rng.normal(size=(n, 2))
    t = X[:, 0] + rng.normal(size=n) * (1 + 0.5 * np.abs(X[:, 1]))
    y = 2 * t + X[:, 0] ** 2 + X[:, 1] + rng.normal(size=n)
    kw = dict(n_repeats=1, n_folds=3, interactions="none", treatment_model="heteroskedastic",
              final_stage="orthogonal")
    base = PLCE(**kw).fit(y, t, X)
    cases = {"y*1e4, t*1e-4": (y * 1e4, t * 1e-4, X, 1e8, 1e-9), "y*1e3": (y * 1e3, t, X, 1e3, 1e-9),
             "t*1e-3": (y, t * 1e-3, X, 1e3, 1e-9), "x0+1e6": (y, t, X + [1e6, 0.0], 1.0, 1e-6)}
    for name, (yy, tt, XX, factor, rel) in cases.items():
        est = PLCE(**kw).fit(yy, tt, XX)
        assert est.theta_ == pytest.approx(base.theta_ * factor, rel=rel), name
        assert est.se_ == pytest.approx(base.se_ * factor, rel=rel), name


def test_weighted_random_intercepts():
    """Unit weights reproduce the unweighted fit exactly; a heavily weighted row pulls its group's intercept to its
    own residual (a_j = sum w r / (sum w + s2 / tau2) with one weight 1e6 -> that row's residual)."""
    from sklearn.dummy import DummyRegressor

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(10), 20)
    y = 2 * rng.standard_normal(10)[g] + rng.standard_normal(200)
    X = np.zeros((200, 1))
    plain = RandomInterceptLearner(DummyRegressor()).fit(X, y, groups=g)
    ones = RandomInterceptLearner(DummyRegressor()).fit(X, y, groups=g, sample_weight=np.ones(200))
    np.testing.assert_allclose(plain.predict(X, groups=g), ones.predict(X, groups=g), rtol=0, atol=1e-12)
    w = np.ones(200)
    w[3] = 1e6
    heavy = RandomInterceptLearner(DummyRegressor(), n_iter=1).fit(X, y, groups=g, sample_weight=w)
    f = heavy.learner_.predict(X[:1])[0]
    assert heavy.effects_[0] == pytest.approx(y[3] - f, abs=1e-3)


def test_weighted_orthogonal_plce_on_the_heterogeneity_design():
    """One data set of the talk's heterogeneity design (true average effect 1) with the default learner: the
    pass-4 configuration runs end to end, exposes the cross-fitted effect function, and its interval covers 1
    within 3 SE; theta(x) = x1^2 (latent x1), so th(x) correlates with x1^2 clearly (> 0.5)."""
    d = simulate_plce(7, "heterogeneity")
    est = PLCE(n_repeats=1, seed=7, treatment_model="heteroskedastic", weighted_nuisances=True,
               final_stage="orthogonal").fit(d.y, d.t, d.X)
    assert est.effect_function_.shape == (1, len(d.y))
    assert abs(est.theta_ - 1.0) < 3 * est.se_ and est.se_ < 0.3
    assert np.corrcoef(est.effect_function_[0], d.latent[:, 0] ** 2)[0, 1] > 0.5
    table = est.summary()
    assert table.loc["PLCE", "estimate"] == pytest.approx(est.theta_)
