"""PLCE: cross-fitting, basis, HC3, aggregation, oracle comparison, extensions, diagnostics, Pyro final stage, CLI,
bad input. Tolerances are stated next to each check with where they come from."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_limits

from pyrozoo.causal.basis import SplineInteractionBasis
from pyrozoo.causal.crossfit import crossfit_predict, make_folds
from pyrozoo.causal.diagnostics import positivity_kurtosis, robustness_value, sensitivity
from pyrozoo.causal.extensions import RandomInterceptLearner, kernel_weights
from pyrozoo.causal.plce import PLCE, aggregate_splits, wls_hc3
from pyrozoo.causal.simulate import simulate_plce
from pyrozoo.errors import PyrozooError


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def fast_learner():
    """Ridge with a closed-form LOO choice of penalty: 10x faster than the default spike-slab EM, used where a test
    is about the estimator's structure rather than the learner (the default learner is exercised by the oracle,
    bad-input, final-stage and CLI tests and by the benchmark)."""
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=np.logspace(-3, 3, 13))


def linear_design(seed: int, n: int = 1000, theta: float = 1.0):
    """y = theta t + x'beta + e, t = x'gamma + v with known linear f and g."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    t = X @ np.array([1.0, -0.5, 0.5, 0.0, 0.0]) + rng.standard_normal(n)
    y = theta * t + X @ np.array([1.0, 1.0, 0.0, -1.0, 0.0]) + rng.standard_normal(n)
    return y, t, X


# ---------------------------------------------------------------- building blocks
def test_folds_partition_rows_and_differ_between_repeats():
    folds = make_folds(103, n_folds=5, n_repeats=3, seed=1)
    assert folds.shape == (3, 103)
    for r in range(3):
        counts = np.bincount(folds[r])
        assert counts.sum() == 103 and counts.max() - counts.min() <= 1
    assert not np.array_equal(folds[0], folds[1])


def test_crossfit_predictions_are_out_of_fold():
    """A 1-nearest-neighbour learner reproduces a training row exactly; out of fold it cannot, because every
    x is distinct and y is pure noise."""
    from sklearn.neighbors import KNeighborsRegressor

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 2)), rng.standard_normal(60)
    cf = crossfit_predict(KNeighborsRegressor(n_neighbors=1), X, {"y": y, "y2": np.stack([y, 2 * y])},
                          n_folds=3, n_repeats=2, seed=0)
    assert cf.predictions["y"].shape == (2, 60) and cf.n_repeats == 2 and cf.n_folds == 3
    assert not np.isclose(cf.predictions["y"], y[None]).any()
    # a target given per repeat uses its own row: repeat 1 predicts 2y
    nn_train = cf.predictions["y2"][1] / 2
    assert np.allclose(nn_train, cf.predictions["y"][1])


def test_basis_columns_and_span():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.standard_normal(300), rng.standard_normal(300), rng.integers(0, 2, 300)])
    lin = SplineInteractionBasis(n_knots=4, degree=3, interactions="linear").fit(X)
    B = lin.transform(X)
    # 2 splined covariates x (n_knots + degree - 2) columns, 1 dummy, 3 pairwise products
    assert B.shape == (300, 2 * 5 + 1 + 3)
    assert np.allclose(B.mean(0), 0, atol=1e-10) and np.allclose(B.std(0), 1)
    quad = SplineInteractionBasis(n_knots=4, interactions="quadratic").fit_transform(X)
    # extra: z1^2 z2, z1 z2^2, z1^2 z2^2 for the continuous pair; z^2 * dummy for the two mixed pairs
    assert quad.shape[1] == B.shape[1] + 3 + 2
    # a NumPy bool counts as a bool (as for check_bool); a string that is not a kind names the argument
    assert SplineInteractionBasis(n_knots=4, interactions=np.True_).fit_transform(X).shape == B.shape
    with pytest.raises(PyrozooError, match="^interactions: expected none, linear or quadratic"):
        SplineInteractionBasis(interactions="no").fit(X)
    # x1^2 x2 lies in the quadratic span: least squares reproduces it
    target = X[:, 0] ** 2 * X[:, 1]
    A = np.column_stack([np.ones(300), quad])
    resid = target - A @ np.linalg.lstsq(A, target, rcond=None)[0]
    assert resid.var() < 1e-6 * target.var()


def test_spike_slab_learner_matches_the_spike_slab_estimator():
    """The nuisance learner's fast path (EMVS + selected-model posterior without a Result) gives the predictions of
    SpikeSlabRegression(inference="em") on the standardized outcome, to round-off."""
    from pyrozoo.causal.plce import SpikeSlabLearner
    from pyrozoo.models.spike_slab import SpikeSlabRegression

    y, t, X = linear_design(3, n=300)
    B = SplineInteractionBasis().fit_transform(X)
    fast = SpikeSlabLearner().fit(B, y)
    ys = (y - y.mean()) / y.std()
    ref = SpikeSlabRegression(inference="em", num_samples=1).fit(B, ys)
    np.testing.assert_allclose(fast.predict(B), y.mean() + y.std() * ref.predict(B), rtol=0, atol=1e-10)
    np.testing.assert_array_equal(fast.selected_, ref.selected_)
    assert 0 < fast.selected_.sum() < B.shape[1]


def test_held_out_columns_are_clipped_to_the_training_range():
    """crossfit_predict(clip_to_train=True) predicts each held-out row from its columns clipped to the training
    folds' range; on the talk's heterogeneity design (data set 2251: a unit at x1* = -4.2, x2* = 3.9, far outside
    the training range of the z1^2 z2^2 column) the unclipped fit gave a treatment residual of -31 and theta 1.57
    (SE 6.8); clipped, theta is within 2 SE of 1 and no residual is absurd."""
    from pyrozoo.causal.crossfit import clip_to_range

    X_train = np.array([[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(clip_to_range(np.array([[-1.0, 2.0], [5.0, 9.0]]), X_train),
                                  [[0.0, 2.0], [2.0, 3.0]])
    d = simulate_plce(2251, "heterogeneity")
    est = PLCE(n_repeats=1, seed=2251, treatment_model="heteroskedastic", interference=True).fit(
        d.y, d.t, d.X, groups=d.groups)
    assert est.clip_to_train and np.abs(est.t_resid_).max() < 8
    assert abs(est.theta_ - 1.0) < 2 * est.se_ and est.se_ < 0.2


def test_wls_hc3_matches_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(200), rng.standard_normal((200, 2))])
    y = X @ [1.0, 2.0, -1.0] + rng.standard_normal(200) * (1 + np.abs(X[:, 1]))
    w = rng.uniform(0.5, 2.0, 200)
    b, V = wls_hc3(X, y, w)
    ref = sm.WLS(y, X, weights=w).fit(cov_type="HC3")
    assert np.allclose(b, ref.params, rtol=1e-10)
    assert np.allclose(V, ref.cov_params(), rtol=1e-8)
    g = np.arange(200) // 10
    _, Vc = wls_hc3(X, y, w, clusters=g)
    refc = sm.WLS(y, X, weights=w).fit(cov_type="cluster", cov_kwds={"groups": g})
    assert np.allclose(Vc, refc.cov_params(), rtol=1e-8)


def test_wls_hc3_is_equivariant_to_units_and_offsets():
    """The feasible model's design [1, t, m_hat, g_hat] with y + 1e8 (so m_hat + 1e8), or y * 1e4 and t * 1e-4:
    pinv(Xw'Xw) dropped the small columns' directions (condition number past 1e15) and gave a coefficient of t of
    -1e-9 with an SE of 1e-18. Now b and V scale as the units do: rel 1e-9 for a rescaling (rounding), 1e-6 for
    the offsets (y + 1e8 itself keeps only ~1.5e-8 absolute precision, ~1e-8 of the residual sd)."""
    from pyrozoo.causal.plce import WeightModel

    rng = np.random.default_rng(5)
    n = 200
    x = rng.standard_normal(n)
    t = x + rng.standard_normal(n)
    y = 2 * t + x**2 + rng.standard_normal(n)
    m, g = 2 * x + x**2 + 0.1 * rng.standard_normal(n), x + 0.1 * rng.standard_normal(n)
    w = rng.uniform(0.5, 2.0, n)
    Zv = np.column_stack([np.ones(n), x**2])
    wm = WeightModel(Zv, rng.standard_normal(n), np.ones(n, dtype=bool))
    for kw in ({}, {"clusters": np.arange(n) // 10}, {"weight_model": wm}):
        b, V = wls_hc3(np.column_stack([np.ones(n), t, m, g]), y, w, **kw)
        for dy, cy, dt, ct, rel in ((1e8, 1.0, 0.0, 1.0, 1e-6), (0.0, 1e4, 0.0, 1e-4, 1e-9),
                                    (1e8, 1.0, 1e6, 1.0, 1e-6), (0.0, 1e-4, 0.0, 1e4, 1e-9)):
            Xu = np.column_stack([np.ones(n), ct * t + dt, cy * m + dy, ct * g + dt])
            bu, Vu = wls_hc3(Xu, cy * y + dy, w, **kw)
            assert bu[1] == pytest.approx(b[1] * cy / ct, rel=rel), (kw.keys(), dy, cy, dt, ct)
            assert Vu[1, 1] == pytest.approx(V[1, 1] * (cy / ct) ** 2, rel=rel), (kw.keys(), dy, cy, dt, ct)
    # a rank-deficient design is solved as the pseudo-inverse did: the identified coefficient is unchanged
    b2, V2 = wls_hc3(np.column_stack([np.ones(n), t, m, g, 2 * g - 1]), y, w)
    b1, V1 = wls_hc3(np.column_stack([np.ones(n), t, m, g]), y, w)
    assert b2[1] == pytest.approx(b1[1], rel=1e-10) and V2[1, 1] == pytest.approx(V1[1, 1], rel=1e-8)


def test_estimates_are_equivariant_to_units_and_offsets():
    """Guard of the main path: theta_ and se_ (default final stage and learner) and the feasible model's estimate
    scale as y / t and ignore offsets of y, t and a covariate. The feasible estimate used to collapse (y + 1e8:
    -1.2e-9 with an SE of 2.5e-18; y * 1e4, t * 1e-4: -0.057e8 instead of 2.16e8). Tolerances: rel 1e-9 for a
    rescaling (rounding); 1e-6 for an offset (y + 1e8 keeps ~1.5e-8 absolute precision; measured 3e-9)."""
    rng = np.random.default_rng(0)
    n = 150
    X = rng.normal(size=(n, 2))
    t = X[:, 0] + rng.normal(size=n)
    y = 2 * t + X[:, 0] ** 2 + X[:, 1] + rng.normal(size=n)
    kw = dict(n_repeats=1, n_folds=3, interactions="none")
    base = PLCE(**kw).fit(y, t, X)
    assert base.theta_feasible_ == pytest.approx(2.1627, abs=1e-4)
    cases = {"y*1e4, t*1e-4": (y * 1e4, t * 1e-4, X, 1e8, 1e-9), "y*1e-3": (y * 1e-3, t, X, 1e-3, 1e-9),
             "y+1e8": (y + 1e8, t, X, 1.0, 1e-6), "t+1e6": (y, t + 1e6, X, 1.0, 1e-6),
             "x0+1e6": (y, t, X + [1e6, 0.0], 1.0, 1e-6)}
    for name, (yy, tt, XX, factor, rel) in cases.items():
        est = PLCE(**kw).fit(yy, tt, XX)
        for attr in ("theta_", "se_", "theta_feasible_", "se_feasible_"):
            assert getattr(est, attr) == pytest.approx(getattr(base, attr) * factor, rel=rel), (name, attr)


def test_cluster_robust_variance_needs_two_clusters():
    """With one cluster the summed score is zero by the normal equations (variance ~1e-33) and CR1's G / (G - 1) is
    undefined: the building blocks refuse it too, naming the argument; two clusters give a positive variance."""
    from pyrozoo.causal.plce import orthogonal_effect

    rng = np.random.default_rng(4)
    rt, ry, w = rng.standard_normal(40), rng.standard_normal(40), np.ones(40)
    with pytest.raises(PyrozooError, match=r"^clusters: .* at least 2 clusters; got 1 distinct"):
        wls_hc3(rt, ry, w, clusters=np.full(40, "a"))
    with pytest.raises(PyrozooError, match=r"^clusters: .* at least 2 clusters; got 1 distinct"):
        orthogonal_effect(ry, rt, w, np.zeros(40), clusters=np.zeros(40))
    assert wls_hc3(rt, ry, w, clusters=np.arange(40) % 2)[1][0, 0] > 1e-6


def test_stacked_sandwich_carries_the_estimated_weights():
    """Two-step WLS with weights 1 / s2_hat, s2_hat by OLS of v^2 on [1, x^2], and a heterogeneous effect
    theta(x) = 1 + 3 x^2 (so the weighted estimate moves with the weights at first order). Over 600 Monte Carlo
    data sets (n = 400) the stacked-equation SE matches the sd of the estimates (in a 2000-replicate check: 0.097
    vs 0.101; MC error of the sd here ~3%), while the HC3 SE that treats the weights as known is ~15% small."""
    from pyrozoo.causal.plce import WeightModel

    rng = np.random.default_rng(0)
    est, se_known, se_stacked = [], [], []
    n = 400
    for _ in range(600):
        x = rng.uniform(-1, 1, n)
        v = np.sqrt(0.2 + 2 * x**2) * rng.standard_normal(n)
        ry = (1 + 3 * x**2) * v + 0.5 * rng.standard_normal(n)
        Z = np.column_stack([np.ones(n), x**2])
        fit = Z @ np.linalg.lstsq(Z, v**2, rcond=None)[0]
        s2 = np.maximum(fit, 0.05)
        b, V0 = wls_hc3(v, ry, 1 / s2)
        _, V1 = wls_hc3(v, ry, 1 / s2, weight_model=WeightModel(Z, v**2 - fit, fit >= 0.05))
        est.append(b[0])
        se_known.append(math.sqrt(V0[0, 0]))
        se_stacked.append(math.sqrt(V1[0, 0]))
    sd = float(np.std(est))
    assert np.mean(se_stacked) == pytest.approx(sd, rel=0.1)
    assert np.mean(se_known) < 0.92 * sd
    # without a weight model (or with constant weights) nothing changes
    b0, V0 = wls_hc3(v, ry, 1 / s2)
    b1, V1 = wls_hc3(v, ry, 2 / s2)
    assert b0[0] == pytest.approx(b1[0]) and V0[0, 0] == pytest.approx(V1[0, 0])


def test_aggregate_splits_is_doubleml_median_rule():
    th, var = np.array([1.0, 1.2, 0.9]), np.array([0.01, 0.02, 0.015])
    theta, se = aggregate_splits(th, var)
    assert theta == 1.0
    assert se == pytest.approx(math.sqrt(np.median(var + (th - 1.0) ** 2)))
    # values where the rule differs from median(V) + median((theta_r - theta)^2) (0.01) and from median(V) (0):
    # V + d^2 = (0.05, 0.04, 0.01), so the median rule gives 0.04
    theta, se = aggregate_splits(th, np.array([0.05, 0.0, 0.0]))
    assert theta == 1.0 and se**2 == pytest.approx(0.04, rel=1e-12)


def test_random_intercepts_recover_group_means():
    """Constant f: the BLUP of a_j is n_j / (n_j + s2/tau2) times the group mean of y - f; with 50 rows a group
    and s2 = 1, tau2 = 4 the shrinkage is 0.995, so the recovered a_j are the group means up to 1% ."""
    from sklearn.dummy import DummyRegressor

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 50)
    a = 2 * rng.standard_normal(20)
    y = a[g] + rng.standard_normal(1000)
    est = RandomInterceptLearner(DummyRegressor()).fit(np.zeros((1000, 1)), y, groups=g)
    fitted = est.predict(np.zeros((1000, 1)), groups=g)
    means = pd.Series(y).groupby(g).mean().to_numpy()
    assert np.allclose(fitted[::50], means, atol=0.02 * np.abs(means).max() + 0.01)
    assert 2.0 < est.tau2_ < 8.0  # tau2 = 4 from 20 groups: sd of the moment estimate ~ 4 sqrt(2/19) = 1.3


def test_kernel_weights_rows_sum_to_one_without_self():
    x = np.random.default_rng(0).standard_normal(50)
    rho = kernel_weights(x, 0.7, chunk=16)
    assert np.allclose(rho.sum(1), 1) and np.allclose(np.diag(rho), 0)
    i, j = 3, 7
    ref = np.exp(-((x[i] - x[j]) ** 2) / 0.7) / sum(np.exp(-((x[i] - x[k]) ** 2) / 0.7) for k in range(50) if k != i)
    assert rho[i, j] == pytest.approx(ref)


def test_simulator_design():
    d = simulate_plce(0, "combined", n=1000)
    x = d.latent
    assert np.allclose(d.X[:, 0], x[:, 0] - 0.5 * x[:, 1]) and np.allclose(d.X[:, 2:], x[:, 2:])
    assert np.bincount(d.groups).tolist() == [20] * 50
    assert d.flags == {"heterogeneous": True, "heteroskedastic": True, "random_effects": True, "interference": True}
    base = simulate_plce(0, "baseline", n=20000)
    resid = base.t - base.latent[:, 0]
    assert resid.var() == pytest.approx(1.0, abs=0.05)  # sd of a sample variance at n=20000: 0.01
    het = simulate_plce(0, "heterogeneity", n=20000)
    v = het.t - het.latent[:, 0]
    assert v.var() == pytest.approx(1.0, abs=0.06)  # E[(x1^2 + 1) / 2] = 1; sd ~ 0.015


# ---------------------------------------------------------------- estimator
def test_linear_design_matches_oracle_ols():
    """With f and g linear, PLCE (spike-slab nuisances on the standardized covariates) and the oracle OLS of y on
    [1, t, X] estimate the same theta up to o(1/sqrt(n)): their difference is a small fraction of the oracle SE
    (about 0.1 SE at n = 1000, by a 40-replication check with this learner); we allow 0.5 SE."""
    for seed in (0, 1):
        y, t, X = linear_design(seed)
        est = PLCE(basis="linear", n_repeats=2, seed=seed).fit(y, t, X)
        b, V = wls_hc3(np.column_stack([np.ones(len(y)), t, X]), y)
        se = math.sqrt(V[1, 1])
        assert abs(est.theta_ - b[1]) < 0.5 * se
        assert est.se_ == pytest.approx(se, rel=0.15)
        assert abs(est.theta_feasible_ - b[1]) < 0.5 * se
        assert abs(est.theta_ - 1.0) < 4 * se


def test_default_spline_basis_matches_oracle_ols_on_a_linear_design():
    """The default estimator (spline basis, spike-and-slab selections, union refit) on benchmarks/plce_linear_bias.py's
    design (t = .7 x1 - .4 x2 + v, y = t + 1.5 x1 + .5 x2 - x3 + e, n = 600) against OLS of y on [1, t, x1, x2, x3].
    With the covariates forced into the refit (``linear_controls``, the default), 20 data sets gave PLCE - OLS
    = -0.0006 (MCSE 0.001), at most 0.23 oracle SE, and SE ratio 1.00; we allow 0.5 SE and 15%. Without them the
    gap was -0.046 (MCSE 0.007), up to 2.9 SE: the linear confounders spread over spline columns that the
    selections keep only in part. Since EMVS's theta step stays off 0 and 1 and its selection scores the
    neighbours of the best model (session 13), the gap without them is -0.028 (MCSE 0.003, 40 data sets,
    benchmarks/RESULTS.md), below OLS in 38 of 40: seeds 0, 1, 2 are 1.14, 0.79, 1.13 SE below (were 1.46, 1.52,
    0.68). Seed 0 shows it."""
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)  # the draws of plce_linear_bias.linear_design(seed)
        X = rng.standard_normal((600, 5))
        t = 0.7 * X[:, 0] - 0.4 * X[:, 1] + rng.standard_normal(600)
        y = t + 1.5 * X[:, 0] + 0.5 * X[:, 1] - X[:, 2] + rng.standard_normal(600)
        b, V = wls_hc3(np.column_stack([np.ones(len(y)), t, X[:, :3]]), y)
        se = math.sqrt(V[1, 1])
        est = PLCE(seed=seed).fit(y, t, X)
        assert est.refit_share_ == 1.0
        assert abs(est.theta_ - b[1]) < 0.5 * se
        assert est.se_ == pytest.approx(se, rel=0.15)
        if seed == 0:
            old = PLCE(seed=seed, linear_controls=False).fit(y, t, X)
            assert b[1] - old.theta_ > 1.0 * se


def test_union_refit_forces_controls_in_penalized_when_they_exceed_the_refit_size():
    """With nothing selected, a fold's refit is least squares on [1, controls]; with more controls than
    max_fraction x (training rows) they join penalized (ridge, LOO penalty). They used to be dropped there, which
    left the union alone (here: the training mean, an unadjusted nuisance)."""
    from types import SimpleNamespace

    from sklearn.linear_model import RidgeCV

    from pyrozoo.causal.crossfit import CrossFitPredictions
    from pyrozoo.causal.partial_ridge import DEFAULT_ALPHAS
    from pyrozoo.causal.plce import union_refit

    rng = np.random.default_rng(0)
    n = 100
    folds = make_folds(n, 2, 1, seed=0)
    design = rng.standard_normal((n, 3))
    y, t = rng.standard_normal(n), rng.standard_normal(n)
    none = SimpleNamespace(selected_=np.zeros(3, dtype=bool))
    cf = CrossFitPredictions({"y": np.zeros((1, n)), "t": np.zeros((1, n))}, folds,
                             {"y": [[none, none]], "t": [[none, none]]})
    for c in (5, 20):  # training rows 50, max_fraction 0.25: at most 12 refit columns
        controls = rng.standard_normal((n, c))
        out, share, counts = union_refit(cf, design, y, t, controls=controls, ridge=False)
        assert share == 1.0
        assert counts == {"training_mean": 0, "penalized_controls": 0 if c == 5 else 2, "union_too_large": 0}
        for k in range(2):
            train, test = folds[0] != k, folds[0] == k
            if c == 5:
                Z = np.column_stack([np.ones(n), controls])
                b = np.linalg.lstsq(Z[train], t[train], rcond=None)[0]
                np.testing.assert_allclose(out.predictions["t"][0, test], Z[test] @ b, atol=1e-10)
            else:
                ridge = RidgeCV(alphas=DEFAULT_ALPHAS).fit(controls[train], t[train])
                np.testing.assert_allclose(out.predictions["t"][0, test], ridge.predict(controls[test]), atol=1e-10)
                assert np.ptp(out.predictions["t"][0, test]) > 0  # not the training mean


def test_summary_table_and_ci():
    y, t, X = linear_design(2, n=300)
    est = PLCE(basis="linear", n_folds=3, n_repeats=2).fit(y, t, pd.DataFrame(X, columns=list("abcde")))
    table = est.summary()
    assert list(table.index) == ["PLCE", "PLCE (feasible)"]
    assert {"estimate", "std_err", "z", "p_value", "ci_2.5%", "ci_97.5%"} <= set(table.columns)
    lo, hi = est.ci_
    assert table.loc["PLCE", "ci_2.5%"] == pytest.approx(lo) and hi - lo == pytest.approx(2 * 1.959964 * est.se_)


def test_heteroskedastic_treatment_model_moves_toward_average_effect():
    """y = t x1^2 + e with Var(t | x) = (x1^2 + 1) / 2: unweighted partialling out converges to the variance-weighted
    effect E[s^2 theta] / E[s^2] = (E x1^4 + E x1^2) / 2 = 2; weighting by 1 / s^2 targets E[theta] = 1."""
    d = simulate_plce(11, "heterogeneity")
    plain = PLCE(fast_learner(), n_repeats=1, seed=1).fit(d.y, d.t, d.X)
    het = PLCE(fast_learner(), n_repeats=1, seed=1, treatment_model="heteroskedastic").fit(d.y, d.t, d.X)
    assert plain.theta_ > 1.4
    assert abs(het.theta_ - 1.0) < abs(plain.theta_ - 1.0) - 0.3


def test_random_effects_remove_group_confounding():
    """The same a_j enters t and y: ignoring groups converges to 1 + Var(a) / Var(t | x) = 1 + 1/2 = 1.5."""
    d = simulate_plce(12, "random_effects")
    plain = PLCE(fast_learner(), n_repeats=1, seed=1).fit(d.y, d.t, d.X)
    re = PLCE(fast_learner(), n_repeats=1, seed=1).fit(d.y, d.t, d.X, groups=d.groups)
    assert plain.theta_ > 1.3
    assert abs(re.theta_ - 1.0) < 4 * re.se_
    assert abs(re.theta_ - 1.0) < abs(plain.theta_ - 1.0) - 0.2


def test_interference_terms_move_toward_truth_when_controls_are_linear():
    """With a linear basis the smooth interference terms (others' x1^2 and treatments) are omitted confounders; the
    learned kernel averages of others' covariates restore them and move the estimate toward 1."""
    d = simulate_plce(13, "interference")
    plain = PLCE(fast_learner(), basis="linear", n_repeats=1, seed=1).fit(d.y, d.t, d.X)
    inter = PLCE(fast_learner(), basis="linear", n_repeats=1, seed=1, interference=True).fit(d.y, d.t, d.X)
    assert abs(inter.theta_ - 1.0) < abs(plain.theta_ - 1.0)
    assert inter.bandwidth_ in inter.bandwidth_scores_


def test_plce_is_a_scikit_learn_estimator_whose_clone_refits_identically():
    """Documented as scikit-learn style, but clone(PLCE()) raised TypeError (no get_params). Now a BaseEstimator:
    get_params returns every __init__ argument unchanged, set_params sets them, a clone is unfitted and refits to
    the same numbers (default learner and union refit, so the PartialRidgeCV path is covered), and a fitted
    estimator still pickles."""
    import inspect
    import pickle

    from sklearn.base import BaseEstimator, clone

    y, t, X = linear_design(3, n=200)
    # a list parameter (bandwidths) must survive get_params/clone unchanged; it acts only with interference
    est = PLCE(n_repeats=2, n_knots=4, seed=1, interference=True, bandwidths=[0.5, 1.0])
    assert isinstance(est, BaseEstimator)
    params = est.get_params(deep=False)
    assert set(params) == set(inspect.signature(PLCE).parameters)
    assert params["n_repeats"] == 2 and params["seed"] == 1 and params["bandwidths"] == [0.5, 1.0]
    assert PLCE(**params).get_params(deep=False) == params
    est.fit(y, t, X)
    twin = clone(est)
    assert not hasattr(twin, "theta_") and twin.get_params(deep=False) == params
    twin.fit(y, t, X)
    assert est.refit_share_ > 0 and twin.refit_share_ == est.refit_share_
    np.testing.assert_array_equal(twin.thetas_, est.thetas_)
    np.testing.assert_array_equal(twin.variances_, est.variances_)
    pd.testing.assert_frame_equal(twin.summary(), est.summary())
    other = clone(est).set_params(n_repeats=1, seed=2)
    assert (other.n_repeats, other.seed, est.n_repeats, est.seed) == (1, 2, 2, 1)
    with pytest.raises(ValueError, match="Invalid parameter 'n_repeat'"):
        PLCE().set_params(n_repeat=3)
    back = pickle.loads(pickle.dumps(est))
    pd.testing.assert_frame_equal(back.summary(), est.summary())
    assert back.get_params(deep=False) == params
    injected = PLCE(fast_learner(), basis="linear", n_folds=2, n_repeats=1)
    copy = clone(injected)  # the learner is cloned too (a fresh, unfitted copy)
    assert copy.learner is not injected.learner and not hasattr(copy.learner, "coef_")
    np.testing.assert_array_equal(copy.learner.alphas, injected.learner.alphas)
    assert copy.fit(y, t, X).theta_ == injected.fit(y, t, X).theta_


# ---------------------------------------------------------------- diagnostics
def test_positivity_kurtosis_formula_and_gaussian_reference():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((5, 20000))
    kappa = positivity_kurtosis(v)
    i = 7
    assert kappa[i] == pytest.approx((v[:, i] ** 4).mean() / ((v[:, i] ** 2).mean()) ** 2)
    # E[kappa] = 3S / (S + 2) exactly for i.i.d. Gaussian residuals (Dirichlet moments); S = 5 -> 15/7.
    # The sd of kappa is about 0.8, so the mean of 20000 units is within 0.02 (> 3 MC sds).
    assert kappa.mean() == pytest.approx(15 / 7, abs=0.02)
    assert np.all((kappa >= 1 - 1e-12) & (kappa <= 5 + 1e-12))


def test_robustness_value_matches_cinelli_hazlett_darfur():
    """Cinelli & Hazlett (2020), Darfur example: t = 4.18, df = 783 -> partial R^2 = 2.2%, RV = 13.9%,
    RV_{alpha=0.05} = 7.6% (their Table 1, rounded to 0.1%)."""
    s = sensitivity(0.0973, 0.0233, 783)
    assert s["partial_r2_treatment"] == pytest.approx(0.022, abs=0.0006)
    assert s["rv_q"] == pytest.approx(0.139, abs=0.0006)
    assert s["rv_q_alpha"] == pytest.approx(0.076, abs=0.0006)
    assert robustness_value(0.5, 100, alpha=0.05) == 0.0


def test_positivity_flags_units_with_deterministic_treatment(tmp_path):
    """Units with x1 > 1 get t = g(x) exactly (no treatment noise: a positivity violation), the others unit noise.
    Their treatment residuals across splits are the small, split-dependent errors of g_hat, so their kurtosis is
    larger than that of units with real treatment variation, whose residual is dominated by the same v_i in every
    split (kappa near 1). Measured over seeds 4-6 with this design and learner: 1.78-1.99 vs 1.21-1.35; we ask for a
    gap of 0.3. The plot is a real PNG of the right size."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 3))
    det = X[:, 0] > 1.0
    t = X @ [1.0, 0.5, 0.0] + np.where(det, 0.0, 1.0) * rng.standard_normal(300)
    y = t + X[:, 1] + rng.standard_normal(300)
    est = PLCE(fast_learner(), basis="linear", n_folds=2, n_repeats=5).fit(y, t, X)
    kappa, summary = est.positivity()
    assert kappa.shape == (300,) and np.all((kappa >= 1 - 1e-9) & (kappa <= 5 + 1e-9))
    assert kappa[det].mean() > kappa[~det].mean() + 0.3
    assert summary["kurtosis_mean"] == pytest.approx(kappa.mean())
    path = est.plot_positivity(str(tmp_path / "pos.png"))
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (660, 440)  # figsize (6, 4) at dpi 110


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("case,message", [
    ("constant_t", r"^t: expected a treatment that varies, got a constant \(2.0\); nothing to estimate$"),
    ("constant_t_rounding", r"^t: expected a treatment that varies, got a constant \(0.1\)"),
    ("constant_y", r"^y: expected an outcome that varies, got a constant \(5.0\); nothing to estimate$"),
    ("repeated_x_names", r"^X: 'a', 'c' given more than once; name each column once$"),
    ("nan_y", "NaN"),
    ("nan_x", "NaN"),
    ("singleton_groups", "single row"),
    ("few_rows", "folds"),
    ("length", "rows"),
    ("treatment_model", "treatment_model"),
    ("text_x", r"^X: expected numbers, got text values in column 'site'.*pd.get_dummies"),
    ("interference_column", "interference_column"),
    ("bandwidth", "bandwidth"),
    ("weight_uncertainty", "weight_uncertainty"),
    ("clip_to_train", "clip_to_train"),
    ("final_stage", "final_stage"),
    ("weighted_nuisances", "weighted_nuisances"),
    ("constant_x", r"X: column\(s\) \['c'\] are constant"),
    ("short_y", "y, t, X: expected the same number of rows, got 40, 50 and 50"),
    ("linear_basis_options", "interactions: expected none, linear or quadratic"),
    ("interference_text", r"^interference: expected True or False, got 'no'"),
    ("random_effects_text", r"^random_effects: expected True or False, got 'no'"),
    ("bandwidths_empty", r"^bandwidths: expected a non-empty list of numbers > 0"),
    ("bandwidths_text", r"^bandwidths: expected a non-empty list of numbers > 0 .*got 'abc'"),
    ("bandwidths_negative", r"^bandwidths: expected a finite value > 0"),
    ("seed_negative", r"^seed: expected an integer seed in \[0, 2\*\*32 - 1\] .*, got -1"),
    ("seed_text", r"^seed: expected an integer seed in \[0, 2\*\*32 - 1\] .*, got 'a'"),
    ("basis_number", r"^basis: expected 'spline', 'linear' or a transformer with fit_transform\(X\), got 3"),
    ("variance_learner", r"^variance_learner: expected an estimator with fit"),
    ("one_row", r"^y: too few rows: cross-fitting with n_folds=5 needs at least 10 rows \(2 per fold\), got 1;"),
    ("device", r"^device: expected one of auto, cpu, cuda"),
    ("one_cluster", r"^groups: cluster-robust standard errors \(se_type='cluster'\) need at least 2 clusters; got 1 "),
    ("categorical_int_x", r"^X: expected numbers, got categorical column\(s\) \['site'\]"),
    ("categorical_text_x", r"^X: expected numbers, got categorical column\(s\) \['site'\]"),
    ("numbers_as_text_x", r"^X: expected numbers, got text values in column 'a' \(e.g. '"),
    ("numbers_as_text_t", r"^t: expected numbers, got text values \(e.g. '"),
    ("categorical_t", r"^t: expected numbers, got a pandas categorical"),
])
def test_bad_input_is_rejected_before_work(case, message, no_fit_learner):
    y, t, X = linear_design(0, n=50)
    groups, kw = None, {}
    if case == "constant_t":
        t = np.full(50, 2.0)
    elif case == "constant_t_rounding":  # np.var(np.full(50, 0.1)) is 7.7e-34 > 0: the old check let it through
        t = np.full(50, 0.1)
    elif case == "constant_y":  # was fitted: estimate -1.4e-16, SE 3e-16, p-value 0.63 (rounding noise)
        y = pd.Series(np.full(50, 5.0))
    elif case == "repeated_x_names":  # was fitted, the columns of one name told apart only by position
        X = pd.DataFrame(X, columns=["a", "b", "a", "c", "c"])
    elif case == "nan_y":
        y[3] = np.nan
    elif case == "nan_x":
        X[5, 1] = np.nan
    elif case == "singleton_groups":
        groups = np.arange(50)
    elif case == "few_rows":
        y, t, X = y[:4], t[:4], X[:4]
    elif case == "length":
        t = t[:40]
    elif case == "treatment_model":
        kw = {"treatment_model": "quantum"}
    elif case == "interference_column":
        kw = {"interference": True, "interference_column": "x1"}
    elif case == "bandwidth":
        kw = {"interference": True, "bandwidth": True}
    elif case == "weight_uncertainty":
        kw = {"treatment_model": "heteroskedastic", "weight_uncertainty": "yes"}
    elif case == "clip_to_train":
        kw = {"clip_to_train": None}
    elif case == "final_stage":
        kw = {"final_stage": "dr"}
    elif case == "weighted_nuisances":
        kw = {"weighted_nuisances": "yes"}
    elif case == "text_x":
        X = pd.DataFrame(X, columns=list("abcde")).assign(site=["u", "v"] * 25)
    elif case == "constant_x":
        X = pd.DataFrame(X, columns=list("abcde")).assign(c=1.0)
    elif case == "short_y":
        y = y[:40]
    elif case == "linear_basis_options":
        kw = {"basis": "linear", "interactions": "banana"}
    elif case == "interference_text":  # ran with interference ("no" is truthy)
        kw = {"interference": "no"}
    elif case == "random_effects_text":  # was "groups: random_effects=True needs a group id per row"
        kw = {"random_effects": "no"}
    elif case == "bandwidths_empty":  # were raw ValueError / TypeError from the bandwidth search
        kw = {"interference": True, "bandwidths": []}
    elif case == "bandwidths_text":
        kw = {"interference": True, "bandwidths": "abc"}
    elif case == "bandwidths_negative":
        kw = {"interference": True, "bandwidths": [0.1, -1.0]}
    elif case == "seed_negative":  # were NumPy's raw errors
        kw = {"seed": -1}
    elif case == "seed_text":
        kw = {"seed": "a"}
    elif case == "basis_number":
        kw = {"basis": 3}
    elif case == "variance_learner":  # was reported as "learner:" after the nuisance fits
        kw = {"treatment_model": "heteroskedastic", "variance_learner": 3}
    elif case == "one_row":  # was "X: column(s) [...] are constant" (every column of one row is)
        y, t, X = y[:1], t[:1], X[:1]
    elif case == "device":  # was raised from inside the first nuisance fit (the learner is injected here)
        kw = {"device": "gpu"}
    elif case == "one_cluster":  # gave SE 6e-17 and a zero-width interval
        groups, kw = np.zeros(50), {"se_type": "cluster", "random_effects": False}
    elif case == "categorical_int_x":  # was used as its numbers: an ordinal covariate
        X = pd.DataFrame(X, columns=list("abcde")).assign(site=pd.Categorical([1, 2, 3, 4, 5] * 10))
    elif case == "categorical_text_x":
        X = pd.DataFrame(X, columns=list("abcde")).assign(site=pd.Categorical(["u", "v"] * 25))
    elif case == "numbers_as_text_x":  # was read as numbers
        X = pd.DataFrame(X, columns=list("abcde")).assign(a=lambda d: d["a"].map(str))
    elif case == "numbers_as_text_t":
        t = pd.Series(t).map(str)
    elif case == "categorical_t":
        t = pd.Series(pd.Categorical(np.round(t)))

    with pytest.raises(PyrozooError, match=message):
        PLCE(no_fit_learner, **kw).fit(y, t, X, groups=groups)


def test_pandas_inputs_must_share_their_index():
    """Rows are matched by position (as in scikit-learn): X with the same labels as y and t in reversed order was
    fitted row by row (theta 1.41 instead of 0.89 in the QA report), without a warning. Now an error naming the
    inputs, before any fit; equal indexes give the NumPy result, and NumPy inputs mix with pandas ones."""
    y, t, X = linear_design(1, n=60)
    idx = np.arange(100, 160)
    ys, ts = pd.Series(y, index=idx), pd.Series(t, index=idx)
    Xd = pd.DataFrame(X, index=idx, columns=list("abcde"))
    fast = {"basis": "linear", "n_folds": 2, "n_repeats": 1}  # (refit='none' was a no-op with ridge; now refused)
    with pytest.raises(PyrozooError, match=r"^y, X: expected pandas inputs with the same index .* got X with the same "
                                           r"labels in another order; align them first, e.g. X = X.loc\[y.index\]"):
        PLCE(fast_learner(), **fast).fit(ys, ts, Xd.iloc[::-1])
    with pytest.raises(PyrozooError, match=r"^y, t: .* got t with other labels \(160 is in t's index but not y's\)"):
        PLCE(fast_learner(), **fast).fit(ys, pd.Series(t, index=idx + 1), X)
    groups = pd.Series(np.repeat(np.arange(6), 10), index=idx)
    with pytest.raises(PyrozooError, match=r"^y, groups: .*reset_index\(drop=True\)"):
        PLCE(fast_learner(), **fast).fit(ys, t, X, groups=groups[::-1])
    theta = PLCE(fast_learner(), **fast).fit(y, t, X).theta_
    assert PLCE(fast_learner(), **fast).fit(ys, ts, Xd).theta_ == pytest.approx(theta, rel=1e-12)
    assert PLCE(fast_learner(), **fast).fit(ys, t, Xd.to_numpy()).theta_ == pytest.approx(theta, rel=1e-12)
    assert PLCE(fast_learner(), **fast).fit(y, t, Xd.iloc[::-1].reset_index(drop=True)).theta_ != theta


# ---------------------------------------------------------------- Pyro final stage
@pytest.mark.parametrize("inference,start", [pytest.param("nuts", None, marks=pytest.mark.slow), ("svi", "near"),
                                             pytest.param("svi", "far", marks=pytest.mark.slow)])
def test_final_stage_posterior_matches_closed_form(inference, start, monkeypatch):
    """Vague prior, n = 400: the posterior of theta is N(theta_wls, s^2 / sum w rt^2) up to O(1/n). NUTS with 400
    draws (ESS > 200) has MC error < 0.07 sd in the mean and < 5% in the sd; we allow 0.2 sd and 15%.

    SVI's guide is parametrized relative to the closed form, theta = m + s (a + b z); left alone it would start
    there, so here it starts away from it and the ELBO must bring it back. "near": 500 steps (the config) from
    a = -3, b = 2 (q(theta) 3 sd off and twice too wide); over seeds 0-3 this ended at |a| <= 0.07, |b - 1| <= 0.05,
    the same spread as started at the closed form (SGD noise of the last, lr 0.005, steps; with 32 particles and lr
    0.15 decaying to 0.3% of it, seeds 0-1 end within 0.005 of both): we allow 0.2 and 0.12 on
    the learned (a, b), and 0.25 sd and 20% on the 400 draws (MC error 0.05 sd and 3.5% on top). "far" (slow):
    from theta ~ N(0, 1) (a ~ -20, b ~ 20 in these units) it needs 3000 steps (at 2000, b was still up to 1.17)."""
    from pyrozoo.config import RunConfig
    from pyrozoo.models import plce as plce_model
    from pyrozoo.models.plce import final_stage_reference, fit_final_stage, make_final_stage_dataset

    y, t, X = linear_design(5, n=400)
    est = PLCE(basis="linear", n_repeats=1, seed=0).fit(y, t, X)
    data = make_final_stage_dataset(est)
    ref = final_stage_reference(data)
    m, sd = ref["theta_mean"], ref["theta_sd"]
    init = {"near": {"theta_mean": m - 3 * sd, "theta_sd": 2 * sd}, "far": {"theta_mean": 0.0, "theta_sd": 1.0}}
    if start is not None:
        make_guide = plce_model.make_final_stage_guide
        monkeypatch.setattr(plce_model, "make_final_stage_guide", lambda r: make_guide(r, init=init[start]))
    cfg = RunConfig(model="plce", inference=inference, num_samples=400, warmup_steps=200, num_chains=1,
                    steps=3000 if start == "far" else 500, progress=False, seed=0).validate()
    result = fit_final_stage(data, cfg)
    if inference == "svi":
        a, b = float(result.params["theta_shift"]), float(result.params["theta_rel_scale"])
        assert abs(a) < 0.2 and abs(b - 1) < 0.12, (a, b)
    draws = result.draws("theta")
    assert abs(draws.mean() - m) < (0.2 if inference == "nuts" else 0.25) * sd
    tol = 0.15 if inference == "nuts" else 0.2
    assert draws.std() == pytest.approx(sd, rel=tol)
    idata = result.to_inference_data()
    assert idata.log_likelihood["y_resid"].shape[-1] == 400
    assert torch.isfinite(torch.as_tensor(idata.log_likelihood["y_resid"].values)).all()


def test_cli_plce_on_a_csv_file(tmp_path, capsys):
    from pyrozoo.cli import main

    y, t, X = linear_design(6, n=300)
    df = pd.DataFrame(X, columns=[f"c{j}" for j in range(5)])
    df["wage"], df["training"] = y, t
    df["site"] = np.repeat(["a", "b", "c"], 100)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    code = main(["plce", "--data", str(path), "--outcome", "wage", "--treatment", "training", "--n-repeats", "2",
                 "--n-folds", "3", "--num-samples", "100", "--inference", "svi", "--steps", "200",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    out = capsys.readouterr().out
    assert "PLCE (HC3)" in out and "posterior [svi" in out
    assert (tmp_path / "run" / "summary.csv").is_file() and (tmp_path / "run" / "positivity.png").is_file()
    assert main(["plce", "--data", str(path), "--outcome", "nope", "--treatment", "training"]) == 2


def test_cli_plce_se_type_and_linear_controls_flags(tmp_path, capsys):
    """--se-type cluster names the cluster SE in the table and metrics; --no-linear-controls reaches the estimator
    (the metrics' theta equals the Python API's with linear_controls=False on the same data and seed)."""
    import json

    from pyrozoo.cli import main

    y, t, X = linear_design(6, n=200)
    df = pd.DataFrame(X, columns=[f"c{j}" for j in range(5)])
    df["y"], df["t"], df["site"] = y, t, np.repeat(np.arange(20), 10)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    common = ["plce", "--data", str(path), "--n-repeats", "1", "--n-folds", "3", "--inference", "svi", "--steps",
              "50", "--num-samples", "50"]
    assert main([*common, "--groups", "site", "--se-type", "cluster", "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "PLCE (cluster)" in captured.out
    # 20 clusters: below 30, one pyrozoo warning line (docs/plce.md shows it for lalonde's race, 3 clusters)
    assert captured.err.count("pyrozoo: warning: groups: cluster-robust standard errors (se_type='cluster') from 20 "
                              "clusters are unreliable") == 1
    assert "se_cluster" in json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert main([*common, "--controls", "c0,c1,c2,c3,c4", "--no-linear-controls", "--out", str(tmp_path / "b")]) == 0
    theta = json.loads((tmp_path / "b" / "metrics.json").read_text())["theta"]
    ref = PLCE(n_folds=3, n_repeats=1, linear_controls=False).fit(y, t, X)
    assert theta == pytest.approx(ref.theta_, abs=1e-9)
    # the flag changes the estimate, so the equality above tells the two apart: OLS on [1, t, X] gives 0.84; with
    # the controls 0.810, without 0.826 (0.82 and 0.64 before EMVS's fix of session 13, when the nuisance fits
    # dropped confounders that the forced controls put back)
    assert abs(PLCE(n_folds=3, n_repeats=1).fit(y, t, X).theta_ - ref.theta_) > 0.005


def test_data_file_problems_are_one_line_errors_naming_the_column(tmp_path, capsys):
    """Each of these used to pass silently, fail mid-fit, or name a position instead of a column."""
    from pyrozoo.cli import main

    rng = np.random.default_rng(0)
    n = 120
    base = pd.DataFrame({"y": rng.normal(size=n), "t": rng.normal(size=n), "x1": rng.normal(size=n),
                         "site": rng.choice(["a", "b", "c"], n)})
    cases = {
        "missing_category": (base.assign(site=base["site"].where(np.arange(n) != 6)), [],
                             "'site' have missing values (first: 'site' at data row 6 (0-based, .iloc[6]))"),
        "constant": (base.assign(const=1.0), [], "constant.csv: control column(s) 'const' are constant"),
        "one_row": (base.head(1), [], "y: too few rows: cross-fitting with n_folds=5 needs at least 10 rows (2 per "
                                      "fold), got 1;"),
        "inf": (base.assign(x1=np.where(np.arange(n) == 5, np.inf, base["x1"])), [],
                "column 'x1' has 1 missing or non-finite value(s) (first at data row 5 (0-based, .iloc[5]): inf)"),
        "identifier": (base.assign(person=[f"p{i}" for i in range(n)]), [], "'person' is text with 120 distinct"),
        "repeated": (base, ["--controls", "x1,x1,site"], "controls: 'x1' given more than once; name each column once"),
        "typo": (base.assign(x2=np.where(np.arange(n) == 4, "1.2.3", rng.normal(size=n).astype(str))), [],
                 "'x2' is mostly numeric but has non-numeric values (first at data row 4 "
                 "(0-based, .iloc[4]): '1.2.3')"),
    }
    for name, (df, extra, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        df.to_csv(path, index=False)
        assert main(["plce", "--data", str(path), "--outcome", "y", "--treatment", "t", *extra]) == 2, name
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (name, err)
    (tmp_path / "semi.csv").write_text("y;t;x1\n1;2;3\n")
    (tmp_path / "header.csv").write_text("y,t,x1\n")
    (tmp_path / "spaces.csv").write_text("y, t, x1\n" + "".join(f"{i}, {i % 7}, {i % 5}\n" for i in range(40)))
    for name, message in (("semi", "reads as one column named 'y;t;x1'"), ("header", "no data rows")):
        assert main(["plce", "--data", str(tmp_path / f"{name}.csv"), "--outcome", "y", "--treatment", "t"]) == 2
        assert message in capsys.readouterr().err
    from pyrozoo.data.shipped import read_table

    assert list(read_table(str(tmp_path / "spaces.csv")).columns) == ["y", "t", "x1"]
    assert main(["plce", "--scenario", "baseline", "--overwrite"]) == 2
    assert "--overwrite replaces an --out directory" in capsys.readouterr().err


def test_lalonde_honours_columns_and_groups(capsys):
    """--dataset lalonde: the column options are honoured (they were silently ignored); the experimental benchmark
    is attached only to the re78-on-treat effect; a missing column is a clear error before fitting."""
    from pyrozoo.cli import main
    from pyrozoo.models.plce import load_lalonde

    fast = {"learner": "ridge", "n_folds": 2, "n_repeats": 1}
    data = load_lalonde(0, groups="race", **fast)
    est = data.meta["plce"]
    assert est.random_effects_ and est.groups_ is not None and set(est.groups_) == {"white", "black", "hispan"}
    assert "race_black" not in data.meta["columns"] and data.truth == {"experimental_benchmark": 1794.0}
    other = load_lalonde(0, outcome="re75", **fast)
    assert other.meta["outcome"] == "re75" and other.truth == {} and "re75" not in other.meta["columns"]
    assert not np.allclose(other.meta["plce"]._y, est._y)
    assert main(["plce", "--dataset", "lalonde", "--outcome", "wage"]) == 2
    assert "wage" in capsys.readouterr().err
    # a column flag with a simulated design would be ignored: an error before any fit
    assert main(["plce", "--scenario", "baseline", "--groups", "g"]) == 2
    assert "groups applies only to a data file (--data) or dataset 'lalonde'" in capsys.readouterr().err


def test_a_missing_column_names_the_option_and_its_flag(tmp_path, capsys):
    """`pyrozoo plce --data f.csv --outcome yy` said "data f.csv: no column 'yy'; ..." without naming the flag (the
    regression readers name `outcome:`); now each column option names itself and how the commands spell it, for
    `pyrozoo plce`, `pyrozoo run plce` (-o outcome=...) and `pyrozoo run effect-curve` (which has only -o)."""
    from pyrozoo.cli import main

    rng = np.random.default_rng(0)
    path = tmp_path / "d.csv"
    pd.DataFrame(rng.normal(size=(30, 4)), columns=["x1", "x2", "t", "y"]).to_csv(path, index=False)
    cols = "; columns are x1, x2, t, y"
    cases = {
        ("--outcome", "yy", "--treatment", "t"): "outcome: data {} has no column(s) 'yy' (given by --outcome, or -o "
                                                 "outcome=COLUMN with pyrozoo run)",
        ("--outcome", "y", "--treatment", "tt"): "treatment: data {} has no column(s) 'tt' (given by --treatment, "
                                                 "or -o treatment=COLUMN with pyrozoo run)",
        ("--outcome", "y", "--treatment", "t", "--groups", "g"): "groups: data {} has no column(s) 'g' (given by "
                                                                 "--groups, or -o groups=COLUMN with pyrozoo run)",
        ("--outcome", "y", "--treatment", "t", "--controls", "x1,x3"): "controls: data {} has no column(s) 'x3' "
                                                                       "(given by --controls, or -o controls=NAME,... "
                                                                       "with pyrozoo run)",
    }
    for flags, message in cases.items():
        assert main(["plce", "--data", str(path), *flags]) == 2, flags
        err = capsys.readouterr().err
        assert message.format(path) + cols in err and err.count("\n") == 1, (flags, err)
    assert main(["run", "plce", "--data", str(path), "-o", "outcome=yy", "-o", "treatment=t", "--no-progress"]) == 2
    assert cases[("--outcome", "yy", "--treatment", "t")].format(path) + cols in capsys.readouterr().err
    assert main(["run", "effect-curve", "--data", str(path), "-o", "outcome=yy", "-o", "treatment=t",
                 "--no-progress"]) == 2
    assert f"outcome: data {path} has no column(s) 'yy' (given by -o outcome=COLUMN){cols}" in capsys.readouterr().err


def test_a_missing_default_column_says_it_is_the_default(tmp_path, capsys):
    """Leaving out --outcome on a file without a column 'y' said "(given by --outcome ...)", a flag the user had not
    given (effect-curve's reader already said "the default")."""
    from pyrozoo.cli import main

    path = tmp_path / "d.csv"
    pd.DataFrame(np.random.default_rng(0).normal(size=(30, 3)), columns=["a", "b", "c"]).to_csv(path, index=False)
    assert main(["plce", "--data", str(path), "--out", str(tmp_path / "out")]) == 2
    assert (f"outcome: data {path} has no column(s) 'y' (the default; give another with --outcome, or -o "
            f"outcome=COLUMN with pyrozoo run); columns are a, b, c") in capsys.readouterr().err
    assert main(["plce", "--data", str(path), "--outcome", "a", "--out", str(tmp_path / "out")]) == 2
    assert "treatment: data" in (err := capsys.readouterr().err) and "'t' (the default; give another with" in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- slow: coverage
@pytest.mark.slow
def test_coverage_on_a_small_design():
    """Baseline design at n = 400, 100 replications: 95% intervals should cover theta = 1 in [0.89, 0.99] of them
    (binomial sd at 0.95 and 100 reps: 0.022; the band is about -2.7 / +1.8 sds). Before the post-double-selection
    refit this measured 0.84 (bias -0.061, MCSE 0.007: over-shrunk spike-and-slab nuisances); with the least-squares
    union refit 0.94, with the ridge union refit (the default) 0.95 (bias -0.003, MCSE 0.006)."""
    hits = 0
    for rep in range(100):
        d = simulate_plce(500 + rep, "baseline", n=400)
        est = PLCE(n_repeats=1, seed=rep).fit(d.y, d.t, d.X)
        lo, hi = est.ci_
        hits += lo <= 1.0 <= hi
    assert 0.89 <= hits / 100 <= 0.99


def test_a_mostly_numeric_text_column_is_a_typo_not_categories():
    """A control column of numbers with one stray text cell used to become hundreds of dummy columns; now it is a
    clear error naming the column, row and value. All-text columns still become dummies."""
    from pyrozoo.models.plce import frame_to_arrays

    df = pd.DataFrame({"y": [1.0, 2, 3, 4], "t": [0.0, 1, 0, 1], "x": ["1.5", "2.5", "abc", "0.5"],
                       "site": ["a", "b", "a", "c"]})
    with pytest.raises(PyrozooError, match=r"control column 'x' is mostly numeric .* data row 2 "
                                           r"\(0-based, \.iloc\[2\]\): 'abc'"):
        frame_to_arrays(df, "y", "t")
    _, _, X, _ = frame_to_arrays(df.drop(columns="x"), "y", "t")
    assert list(X.columns) == ["site_b", "site_c"]


def test_a_blank_header_column_is_an_error_unless_the_controls_are_named(tmp_path, capsys):
    """df.to_csv(path) writes the index as a first column with a blank header, which pandas reads as 'Unnamed: 0';
    it became a control (theta 0.79 instead of 1.11 on a sorted file in the QA report). Now an error with the
    default controls; named controls leave it unused, and the run records the controls it used."""
    import json

    from pyrozoo.cli import main
    from pyrozoo.models.plce import frame_to_arrays

    y, t, X = linear_design(7, n=60)
    df = pd.DataFrame({"y": y, "t": t, "x1": X[:, 0], "site": np.repeat(["a", "b", "c"], 20)})
    path = tmp_path / "indexed.csv"
    df.to_csv(path)  # pandas' default writes the index
    message = ("column 1 has no name in its header (a file written by DataFrame.to_csv with its index?): write it "
               "with index=False or name the controls with --controls")
    with pytest.raises(PyrozooError, match=r"^data: column 1 has no name in its header"):
        frame_to_arrays(pd.read_csv(path), "y", "t")
    _, _, Xn, _ = frame_to_arrays(pd.read_csv(path), "y", "t", "x1,site")
    assert Xn.attrs["controls"] == ["x1", "site"] and list(Xn.columns) == ["x1", "site_b", "site_c"]
    assert frame_to_arrays(df, "y", "t")[2].attrs["controls"] == ["x1", "site"]
    fast = ["--learner", "ridge", "--n-folds", "2", "--n-repeats", "1", "--inference", "svi", "--steps", "20",
            "--num-samples", "20"]
    assert main(["plce", "--data", str(path), *fast]) == 2
    err = capsys.readouterr().err
    assert f"data {path}: {message}" in err and err.count("\n") == 1, err
    assert main(["run", "plce", "--data", str(path), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["plce", "--data", str(path), "--controls", "x1,site", *fast, "--out", str(out)]) == 0
    assert "controls: x1, site" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["controls"] == ["x1", "site"]


def test_outcome_treatment_and_controls_must_be_different_columns(tmp_path, capsys):
    """The same column as outcome and treatment crashed after the fit (division by a zero standard error); the
    outcome or treatment among the controls gave a nonsense estimate with exit 0. Both are errors before work."""
    from pyrozoo.cli import main
    from pyrozoo.models.plce import frame_to_arrays

    df = pd.DataFrame({"y": [1.0, 2, 3, 4], "t": [0.0, 1, 0, 1], "a": [0.5, 0.1, 0.3, 0.2]})
    with pytest.raises(PyrozooError, match="treatment: the column 'y' is also the outcome"):
        frame_to_arrays(df, "y", "y")
    for controls in ("y", "t,a"):
        with pytest.raises(PyrozooError, match="controls: .* is the outcome, treatment or group column"):
            frame_to_arrays(df, "y", "t", controls)
    csv = tmp_path / "d.csv"
    df.to_csv(csv, index=False)
    assert main(["plce", "--data", str(csv), "--outcome", "y", "--treatment", "y"]) == 2
    assert "treatment: the column 'y' is also the outcome" in capsys.readouterr().err


def test_a_learner_without_fit_and_predict_is_a_clear_error():
    from sklearn.linear_model import RidgeCV

    y, t, X = linear_design(1, n=60)
    with pytest.raises(PyrozooError, match="learner: expected an estimator with fit"):
        PLCE("banana", n_folds=2, n_repeats=1).fit(y, t, X)
    from pyrozoo.causal.crossfit import crossfit_predict

    with pytest.raises(PyrozooError, match=r"learner\['t'\]: expected an estimator"):
        crossfit_predict({"y": RidgeCV(), "t": 3}, X, {"y": y, "t": t}, n_folds=2)


def test_numpy_scalars_are_accepted_as_bandwidth_and_seed():
    """np.float32(0.5) was rejected as "bandwidth: expected a number > 0"; an integral float seed reached NumPy's
    generator, which refuses 2.0."""
    y, t, X = linear_design(5, n=80)
    est = PLCE(fast_learner(), basis="linear", n_folds=2, n_repeats=1, interference=True,
               bandwidth=np.float32(0.5)).fit(y, t, X)
    assert est.bandwidth_ == 0.5
    grid = PLCE(fast_learner(), basis="linear", n_folds=2, n_repeats=1, interference=True,
                bandwidths=np.array([0.5, 2.0], dtype=np.float32)).fit(y, t, X)
    assert grid.bandwidth_ in (0.5, 2.0)
    assert np.array_equal(make_folds(30, 3, 2, seed=2.0), make_folds(30, 3, 2, seed=np.int64(2)))
    with pytest.raises(PyrozooError, match=r"^seed: expected an integer seed in \[0, 2\*\*32 - 1\] .*got 1.5"):
        make_folds(30, 3, 2, seed=1.5)


def test_a_learner_error_in_the_cross_fit_says_where():
    """A learner's complaint about its design is reported with the target, fold, and training-set size, so it is
    not read as a complaint about the user's own X. (Its old trigger, design columns constant on a fold's 4
    training rows, is no longer an error: the cross-fit leaves such columns out of that fold, test_crossfit.py.)"""

    class Refuses:
        def fit(self, X, y):
            raise PyrozooError("X: column(s) [3] are too odd")

        def predict(self, X):
            raise AssertionError

    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 3))
    t = X[:, 0] + rng.standard_normal(8)
    y = t + rng.standard_normal(8)
    with pytest.raises(PyrozooError, match=r"cross-fit of 'y', repeat 0, fold 0 \(4 training rows x \d+ design "
                                           r"columns\): X: column\(s\) \[3\] are too odd"):
        PLCE(Refuses(), n_folds=2, n_repeats=1, refit="none").fit(y, t, X)


# ---------------------------------------------------------------- building blocks against hand-written references
def test_interference_features_match_an_explicit_loop():
    """n = 6 units at unevenly spaced x (so rho is not symmetric): each feature row is sum_{i' != i} rho_ii' w_i'
    with rho_ii' = exp(-(x_i - x_i')^2 / nu) / sum_{i'' != i} exp(-(x_i - x_i'')^2 / nu) and w = [z1, z2, z1^2,
    z2^2, z1 z2] of the standardized covariates (np.std, ddof 0), the columns then standardized the same way. Written
    as Python loops; agreement to 1e-12 absolute (round-off on O(1) values)."""
    from pyrozoo.causal.extensions import interference_features

    x = [0.0, 0.1, 0.35, 1.0, 1.8, 3.2]
    X = np.array([[x[i], v] for i, v in enumerate([0.5, -1.2, 0.3, 2.0, -0.4, 0.9])])
    nu = 0.7
    n = 6
    cols = []
    for j in range(2):
        m = sum(X[i, j] for i in range(n)) / n
        s = math.sqrt(sum((X[i, j] - m) ** 2 for i in range(n)) / n)
        cols.append([(X[i, j] - m) / s for i in range(n)])
    z1, z2 = cols
    W = [[z1[i], z2[i], z1[i] ** 2, z2[i] ** 2, z1[i] * z2[i]] for i in range(n)]
    F = np.zeros((n, 5))
    for i in range(n):
        den = sum(math.exp(-((x[i] - x[k]) ** 2) / nu) for k in range(n) if k != i)
        for k in range(n):
            if k != i:
                F[i] += math.exp(-((x[i] - x[k]) ** 2) / nu) / den * np.array(W[k])
    ref = (F - F.mean(0)) / F.std(0)
    rho = kernel_weights(X[:, 0], nu)
    assert np.max(np.abs(rho - rho.T)) > 0.1  # the test can tell rho from rho.T
    np.testing.assert_allclose(interference_features(X, nu), ref, rtol=0, atol=1e-12)


def test_blup_matches_one_way_anova_moments_by_hand():
    """3 groups of 4 fixed residuals (rows interleaved): sigma^2 = pooled within-group variance (divisor n - m = 9),
    tau^2 = max(0, var of the group means with ddof = 1 - sigma^2 / 4) and a_j = sum_{i in j} r_i / (4 + sigma^2 /
    tau^2), computed by hand (the RandomInterceptLearner docstring); agreement to 1e-12 relative."""
    from pyrozoo.causal.extensions import _blup

    groups = [[1.0, 1.5, 0.5, 1.2], [-1.0, -0.6, -1.4, -0.8], [3.0, 2.5, 3.4, 2.9]]
    r = np.array([groups[i % 3][i // 3] for i in range(12)])
    inv = np.array([i % 3 for i in range(12)])
    means = [sum(g) / 4 for g in groups]
    sigma2 = sum((v - means[j]) ** 2 for j, g in enumerate(groups) for v in g) / (12 - 3)
    grand = sum(means) / 3
    tau2 = max(0.0, sum((m - grand) ** 2 for m in means) / 2 - sigma2 / 4)
    assert tau2 > 0
    a = [sum(g) / (4 + sigma2 / tau2) for g in groups]
    a_hat, tau2_hat, sigma2_hat = _blup(r, inv, 3)
    assert tau2_hat == pytest.approx(tau2, rel=1e-12)
    assert sigma2_hat == pytest.approx(sigma2, rel=1e-12)
    np.testing.assert_allclose(a_hat, a, rtol=1e-12)


def test_positivity_summary_threshold_and_share_by_hand():
    """S = 5: threshold = g + (S - g) / 2 with the Gaussian reference g = 3S / (S + 2) = 15/7 (the docstring), i.e.
    25/7 = 3.571...; the flagged share is (kappa > threshold).mean() over the finite kappa (NaN dropped). kappa
    3.6 and 3.8 lie between 25/7 and 4 (the threshold with g = 3), so the share tells the two apart. Exact to 1e-12."""
    from pyrozoo.causal.diagnostics import positivity_summary

    kappa = np.array([1.2, 2.9, 3.6, 3.8, 4.5, np.nan])
    S = 5
    g = 3 * S / (S + 2)
    thr = g + 0.5 * (S - g)
    assert thr == pytest.approx(25 / 7, rel=1e-12)
    out = positivity_summary(kappa, S)
    assert out["kurtosis_threshold"] == pytest.approx(thr, rel=1e-12)
    finite = kappa[np.isfinite(kappa)]
    assert out["kurtosis_share_flagged"] == pytest.approx((finite > thr).mean(), rel=1e-12)
    assert out["kurtosis_share_flagged"] == pytest.approx(0.6, rel=1e-12)
    assert out["kurtosis_mean"] == pytest.approx(finite.mean(), rel=1e-12)
    assert out["kurtosis_max"] == 4.5


def test_treatment_variance_floor_is_per_split():
    """2 splits x 5 units, a learner that predicts 1e-9 everywhere (below any floor): s2[r, i] = floor *
    mean_i(v_hat[r, i]^2), the mean over the units of split r (the docstring's floor), a different value per split
    row. Exact to 1e-12 relative."""
    from sklearn.dummy import DummyRegressor

    from pyrozoo.causal.extensions import treatment_variance

    v = np.array([[0.5, -1.0, 2.0, 0.1, -0.3], [1.5, 0.2, -0.7, -2.5, 0.9]])
    folds = np.array([[0, 1, 0, 1, 0], [1, 0, 0, 1, 1]])
    feats = np.arange(10.0).reshape(5, 2)
    s2 = treatment_variance(v, feats, DummyRegressor(strategy="constant", constant=1e-9), folds, floor=0.25)
    expected = np.array([[0.25 * sum(a * a for a in row) / 5] * 5 for row in v.tolist()])
    assert expected[0, 0] != pytest.approx(expected[1, 0])
    np.testing.assert_allclose(s2, expected, rtol=1e-12)


_NEEDS_HETERO = "treatment_model='heteroskedastic'; with treatment_model='homoskedastic'"
_NEEDS_SELECTION = (r"a learner exposing a column selection \(selected_, as the default spike-and-slab learner "
                    r"does\); with learner=RidgeCV \(no column selection to refit\)")


@pytest.mark.parametrize("kw, message", [
    ({"weighted_nuisances": True}, rf"^weighted_nuisances: True applies only with {_NEEDS_HETERO}"),
    ({"variance_learner": "ridge"}, rf"^variance_learner: a variance learner applies only with {_NEEDS_HETERO}"),
    ({"weight_uncertainty": False}, rf"^weight_uncertainty: False applies only with {_NEEDS_HETERO}"),
    ({"treatment_model": "heteroskedastic", "variance_learner": "ridge", "weight_uncertainty": False},
     r"^weight_uncertainty: False applies only with the default variance model \(variance_learner=None\)"),
    ({"bandwidth": 0.5}, r"^bandwidth: 0.5 applies only with interference=True; with interference=False"),
    ({"bandwidths": [0.5, 1.0]}, r"^bandwidths: \[0.5, 1.0\] applies only with interference=True; with interference"),
    ({"interference_column": 2}, r"^interference_column: 2 applies only with interference=True; with interference"),
    ({"interference": True, "bandwidth": 0.5, "bandwidths": [0.5, 1.0]},
     r"^bandwidths: a grid applies only with bandwidth=None .*; with bandwidth=0.5 it would have no effect"),
    ({"learner": "ridge", "refit": "union_ols"}, rf"^refit: 'union_ols' applies only with {_NEEDS_SELECTION}"),
    ({"learner": "ridge", "refit": "none"}, rf"^refit: 'none' applies only with {_NEEDS_SELECTION}"),
    ({"learner": "ridge", "linear_controls": False}, rf"^linear_controls: False applies only with {_NEEDS_SELECTION}"),
    ({"learner": "ridge", "max_refit_fraction": 0.5},
     rf"^max_refit_fraction: 0.5 applies only with {_NEEDS_SELECTION}"),
    ({"refit": "none", "linear_controls": False},
     r"^linear_controls: False applies only with refit='union' or 'union_ols'; with refit='none'"),
    ({"treatment_model": "heteroskedastic", "refit": "none", "weighted_nuisances": True},
     r"^weighted_nuisances: True applies only with refit='union' or 'union_ols'; with refit='none'"),
    ({"learner": "ridge", "treatment_model": "heteroskedastic", "weighted_nuisances": True},
     rf"^weighted_nuisances: True applies only with {_NEEDS_SELECTION}"),
])
def test_options_that_would_be_ignored_are_refused_before_any_fit(kw, message, monkeypatch):
    """Each of these was accepted and ignored: the fit gave the default fit's theta_ exactly (n = 150, 3 folds, one
    split; e.g. weighted_nuisances=True without the heteroskedastic model, bandwidth= without interference,
    refit='none' with RidgeCV, which selects no columns). Now fit refuses them before any nuisance is fitted,
    naming the option, the option it depends on and the value that one needs; the estimator still clones."""
    from sklearn.base import clone

    import pyrozoo.causal.plce as plce_module

    kw = dict(kw)
    if kw.get("learner") == "ridge":
        kw["learner"] = fast_learner()
    if kw.get("variance_learner") == "ridge":
        kw["variance_learner"] = fast_learner()
    est = PLCE(n_folds=3, n_repeats=1, **kw)
    twin = clone(est)  # sklearn's clone checks that get_params returns every argument unchanged
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()

    def no_fit(*args, **kwargs):
        raise AssertionError("a nuisance fit started before the options were checked")

    monkeypatch.setattr(plce_module, "crossfit_predict", no_fit)
    y, t, X = linear_design(0, n=150)
    for e in (est, twin):
        with pytest.raises(PyrozooError, match=message):
            e.fit(y, t, X)


def test_ignored_option_checks_leave_defaults_and_effective_settings_alone():
    """Only a value away from the default is refused: the defaults with a non-selecting learner (refit='union',
    linear_controls=True, interference_column=0 ...) and every combination where the option acts are accepted; a
    learner whose selection is unknown before fitting (not a scikit-learn estimator) is not second-guessed."""
    from sklearn.base import clone

    from pyrozoo.causal.plce import SpikeSlabLearner, learner_selects

    ok = [
        PLCE(fast_learner()),
        PLCE(fast_learner(), refit="union", linear_controls=True, max_refit_fraction=0.25, interference_column=0,
             weighted_nuisances=False, weight_uncertainty=True),
        PLCE(treatment_model="heteroskedastic", weighted_nuisances=True, refit="union_ols", weight_uncertainty=False),
        PLCE(treatment_model="heteroskedastic", variance_learner=fast_learner()),
        PLCE(interference=True, bandwidth=0.5, interference_column=np.int64(2)),
        PLCE(interference=True, bandwidths=[0.5, 1.0]),
        PLCE(refit="none", linear_controls=True),
        PLCE(SpikeSlabLearner(), refit="union_ols", linear_controls=False, max_refit_fraction=0.5),
    ]
    for est in ok:
        est._check_option_effects()
        clone(est)._check_option_effects()
    assert learner_selects(None) and learner_selects(SpikeSlabLearner) and learner_selects(SpikeSlabLearner())
    assert learner_selects(fast_learner()) is False and learner_selects(type(fast_learner())) is False
    assert learner_selects(lambda: fast_learner()) is None


def test_few_clusters_warn_that_the_cluster_se_is_unreliable():
    """docs/plce.md's example clustered lalonde by race: 3 clusters, and CR1 with normal quantiles is far too small
    there (it over-rejects below ~20-50 clusters, Cameron & Miller 2015), with no word of it. Now fit warns once,
    before any work, below MIN_RELIABLE_CLUSTERS = 30, naming the count; 30 clusters fit silently."""
    import warnings

    from pyrozoo.causal.plce import MIN_RELIABLE_CLUSTERS

    assert MIN_RELIABLE_CLUSTERS == 30
    y, t, X = linear_design(1, n=180)
    kw = {"basis": "linear", "n_folds": 3, "n_repeats": 1, "se_type": "cluster", "random_effects": False}
    with pytest.warns(UserWarning, match=r"^groups: cluster-robust standard errors \(se_type='cluster'\) from 3 "
                      r"clusters are unreliable: .*about 30 or more") as record:
        est = PLCE(fast_learner(), **kw).fit(y, t, X, groups=np.arange(180) % 3)
    assert sum("cluster-robust" in str(w.message) for w in record) == 1  # once per fit, not once per split
    assert record[0].filename == __file__  # points at the caller's fit(...)
    assert np.isfinite(est.se_)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*cluster-robust")
        PLCE(fast_learner(), **kw).fit(y, t, X, groups=np.arange(180) % 30)
        PLCE(fast_learner(), basis="linear", n_folds=3, n_repeats=1).fit(y, t, X, groups=np.arange(180) % 3)


class _OracleTreatmentVariance:
    """A variance learner that knows Var(t | x) = 0.5 + x0^2 (reads x0 back from the standardized linear basis)."""

    def __init__(self, mean0: float, sd0: float):
        self.mean0, self.sd0 = mean0, sd0

    def fit(self, Z, target):
        return self

    def predict(self, Z):
        return 0.5 + (Z[:, 0] * self.sd0 + self.mean0) ** 2


def test_heteroskedastic_weights_are_the_inverse_treatment_variance():
    """y = x0^2 t + x'b + e, t = x'g + s(x) u with s^2 = 0.5 + x0^2 (E theta(x) = 1). With the true s^2 as the
    variance model, theta_ must be the oracle WLS sum(rt ry / s^2) / sum(rt^2 / s^2) on the estimator's own residuals
    (exact, 1e-10), and so unbiased for E theta = 1: within 4 SE on this seed (20 seeds: mean 1.007, sd 0.096, mean
    SE 0.095). Weights 1 / s would target E[theta s] / E[s] = 1.56 here (~6 SE off). The default variance model's
    stored weights_ (what the Pyro final stage reads) are 1 / s^2 too, normalized to mean 1 per split."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(3)
    n = 1000
    X = rng.standard_normal((n, 3))
    s2 = 0.5 + X[:, 0] ** 2
    t = X @ [0.5, 1.0, 0.0] + np.sqrt(s2) * rng.standard_normal(n)
    y = X[:, 0] ** 2 * t + X @ [0.0, 1.0, -1.0] + rng.standard_normal(n)
    est = PLCE(LinearRegression(), basis="linear", n_repeats=1, seed=0, treatment_model="heteroskedastic",
               clip_to_train=False,
               variance_learner=lambda: _OracleTreatmentVariance(X[:, 0].mean(), X[:, 0].std())).fit(y, t, X)
    np.testing.assert_allclose(est.treatment_variance_[0], s2, rtol=1e-10)
    ry, rt = est.y_resid_[0], est.t_resid_[0]
    assert est.theta_ == pytest.approx((rt * ry / s2).sum() / (rt * rt / s2).sum(), rel=1e-10)
    assert abs(est.theta_ - 1.0) < 4 * est.se_, (est.theta_, est.se_)
    default = PLCE(LinearRegression(), basis="linear", n_repeats=2, seed=0,
                   treatment_model="heteroskedastic").fit(y, t, X)
    w_ref = 1.0 / default.treatment_variance_
    np.testing.assert_allclose(default.weights_, w_ref / w_ref.mean(axis=1, keepdims=True), rtol=1e-10)


def test_final_stage_guide_init_is_checked_and_sets_the_start():
    """``make_final_stage_guide(ref, init=...)``: q(theta) starts at the given mean and sd (a = (mean - m) / s,
    b = sd / s); unknown keys and a non-positive sd are refused when the guide is made, before any SVI step."""
    import pyro

    from pyrozoo.models.plce import make_final_stage_guide

    ref = {"theta_mean": 2.0, "theta_sd": 0.5, "sigma_rel": 1.0}
    args = (torch.zeros(3), torch.ones(3), torch.tensor(1.0), torch.tensor(1.0))
    pyro.clear_param_store()
    tr = pyro.poutine.trace(make_final_stage_guide(ref, init={"theta_mean": 0.0, "theta_sd": 1.0})).get_trace(*args)
    q = tr.nodes["theta"]["fn"]
    assert q.loc.item() == pytest.approx(0.0, abs=1e-6) and q.scale.item() == pytest.approx(1.0, rel=1e-6)
    pyro.clear_param_store()
    q = pyro.poutine.trace(make_final_stage_guide(ref)).get_trace(*args).nodes["theta"]["fn"]
    assert q.loc.item() == pytest.approx(2.0, rel=1e-6) and q.scale.item() == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(PyrozooError, match=r"init: expected a mapping with theta_mean and/or theta_sd, got \[0.0\]"):
        make_final_stage_guide(ref, init=[0.0])
    with pytest.raises(PyrozooError, match=r"init: expected keys among theta_mean, theta_sd, got 'mean'"):
        make_final_stage_guide(ref, init={"mean": 0.0})
    with pytest.raises(PyrozooError, match=r"init\['theta_sd'\]: expected a finite value > 0, got -1.0"):
        make_final_stage_guide(ref, init={"theta_sd": -1.0})
    with pytest.raises(PyrozooError, match=r"init\['theta_mean'\]: expected a finite number, got the string 'x'"):
        make_final_stage_guide(ref, init={"theta_mean": "x"})


def test_tensors_that_require_grad_are_fitted_as_their_values():
    """PLCE().fit(torch.tensor(y), torch.tensor(t), X with requires_grad=True) failed in NumPy (torch's raw "Can't
    call numpy() on Tensor that requires grad"); the estimate is that of plain arrays."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    t = X[:, 0] + rng.standard_normal(60)
    y = t + X[:, 1] + rng.standard_normal(60)
    plain = PLCE(fast_learner(), n_repeats=1, seed=0).fit(y, t, X)
    grad = PLCE(fast_learner(), n_repeats=1, seed=0).fit(torch.tensor(y, requires_grad=True),
                                                         torch.tensor(t, requires_grad=True),
                                                         torch.tensor(X, requires_grad=True))
    assert grad.theta_ == plain.theta_ and grad.se_ == plain.se_


def test_groups_that_no_setting_reads_are_refused(no_fit_learner):
    """random_effects=False with HC3 reads no groups: fit(..., groups=g) gave the numbers of groups=None exactly,
    silently. Refused before any fit; random effects (random_effects None or True) or se_type='cluster' read them."""
    y, t, X = linear_design(1, n=60)
    g = np.arange(60) % 30  # 30 clusters: no few-clusters warning
    with pytest.raises(PyrozooError, match=r"^groups: group ids apply only with random effects \(random_effects=True, "
                                           r"or None, the default\) or se_type='cluster'; with random_effects=False "
                                           r"and se_type='hc3' they would have no effect \(remove them\)$"):
        PLCE(no_fit_learner, random_effects=False, n_folds=3, n_repeats=1).fit(y, t, X, groups=g)
    for kw in ({}, {"random_effects": True}, {"random_effects": False, "se_type": "cluster"}):
        with pytest.raises(AssertionError, match="fit must not start"):  # the checks passed: the fit started
            PLCE(no_fit_learner, n_folds=3, n_repeats=1, **kw).fit(y, t, X, groups=g)


def test_a_date_column_is_refused_naming_it_before_any_fit(no_fit_learner):
    """A datetime64 column of a DataFrame X was taken as a number (nanoseconds since 1970): PLCE 1.936 against
    1.960 without it."""
    y, t, X = linear_design(1, n=60)
    Xd = pd.DataFrame(X, columns=list("abcde")).assign(day=pd.date_range("2020-01-01", periods=60))
    with pytest.raises(PyrozooError, match=r"^X: expected numbers, got dates in column 'day' \(datetime64"):
        PLCE(no_fit_learner, n_folds=3, n_repeats=1).fit(y, t, Xd)


def test_a_treatment_that_is_a_linear_function_of_the_covariates_is_refused_before_any_fit(no_fit_learner):
    """t = x1 (the QA's case: PLCE 5.41, SE 1.17, a 'definite' effect of a treatment that is not identified), and an
    affine copy 2 x1 + 1 of a DataFrame column, named in the error; checked before any nuisance fit."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 3))
    y = X[:, 0] + X[:, 1] + rng.standard_normal(300)
    fast = {"n_folds": 3, "n_repeats": 1}
    with pytest.raises(PyrozooError, match=r"^t: the treatment is a linear function of the covariates \(column\(s\) "
                                           r"\[0\]\): .* its effect is not identified"):
        PLCE(no_fit_learner, **fast).fit(y, X[:, 0].copy(), X)
    Xd = pd.DataFrame(X, columns=["x1", "x2", "x3"])
    with pytest.raises(PyrozooError, match=r"^t: the treatment is a linear function of the covariates \(column\(s\) "
                                           r"\['x1'\]\)"):
        PLCE(no_fit_learner, **fast).fit(y, 2 * Xd["x1"] + 1, Xd)


def test_a_seed_beyond_numpys_range_is_refused_before_the_nuisance_fits(monkeypatch):
    """The default spike-slab learners seed through set_seed (NumPy's range, [0, 2**32 - 1]): seed=2**32 passed the
    seed >= 0 check and failed with NumPy's raw ValueError once cross-fitting was under way."""
    import pyrozoo.causal.plce as plce_module

    def no_work(*args, **kwargs):
        raise AssertionError("cross-fitting started before the seed was checked")

    monkeypatch.setattr(plce_module, "crossfit_predict", no_work)
    y, t, X = linear_design(0, n=50)
    for seed in (2**32, 10**20):
        with pytest.raises(PyrozooError, match=rf"^seed: expected an integer seed in \[0, 2\*\*32 - 1\] .*got {seed}"):
            PLCE(seed=seed).fit(y, t, X)


def test_spike_slab_learner_refuses_pandas_rows_in_another_order():
    """The nuisance learner pairs X and y by position: a y Series with X's labels in another order was fitted (and
    scored) against the wrong rows without a word; fit and score refuse it, as SpikeSlabRegression and PLCE do."""
    from pyrozoo.causal.plce import SpikeSlabLearner

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.standard_normal((40, 3)), columns=["a", "b", "c"])
    y = pd.Series(2 * X["a"] + 0.1 * rng.standard_normal(40))
    shuffled = y.sample(frac=1, random_state=0)
    with pytest.raises(PyrozooError, match=r"^X, y: expected pandas inputs with the same index .* another order"):
        SpikeSlabLearner().fit(X, shuffled)
    learner = SpikeSlabLearner().fit(X, y)
    assert learner.score(X, y) > 0.9
    with pytest.raises(PyrozooError, match=r"^X, y: expected pandas inputs with the same index"):
        learner.score(X, shuffled)


def test_missing_group_ids_are_named_by_their_first_position():
    """"groups: expected a group id for every row, found missing values" said neither how many nor where; it now
    gives the count and the first one, by index for an array and by row label for a Series (as check_finite)."""
    rng = np.random.default_rng(0)
    X, t = rng.normal(size=(40, 2)), rng.normal(size=40)
    y = t + rng.normal(size=40)
    g = np.repeat([1.0, 2.0], 20)
    g[[5, 9]] = np.nan
    with pytest.raises(PyrozooError, match=r"^groups: expected a group id for every row, found 2 missing \(first at "
                                           r"index 5\)$"):
        PLCE().fit(y, t, X, groups=g)
    with pytest.raises(PyrozooError, match=r"found 2 missing \(first at row 105\)$"):
        PLCE().fit(pd.Series(y, index=range(100, 140)), t, X, groups=pd.Series(g, index=range(100, 140)))


def _small_confounded(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """t = x1 + v, y = t + x1 + e (theta = 1), x ~ N(0, I_p): the QA pass's small-n design."""
    rng = np.random.default_rng(50 + seed)
    X = rng.standard_normal((n, p))
    t = X[:, 0] + rng.standard_normal(n)
    return t + X[:, 0] + rng.standard_normal(n), t, X


def test_few_rows_many_covariates_keep_the_controls_penalized_and_warn():
    """n = 40, 10 covariates: 10 controls exceed max_refit_fraction x 32 training rows = 8, so every fold dropped
    them and refitted on the one to three spline columns selected (or none: the training mean), silently. The
    estimate was 1.529 (SE 0.158), near the naive slope 1.621, against OLS with the true control 1.222 (1.9 SE).
    Now they join each refit penalized, with one warning per fit and the count on the estimator: 1.271 (SE 0.120),
    0.4 SE from that OLS (8 seeds: mean |z| from 1 went 1.99 -> 1.05). With 3 covariates (room for them
    unpenalized) nothing changes and nothing is said."""
    import warnings

    y, t, X = _small_confounded(40, 10, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = PLCE(n_repeats=1, seed=1).fit(y, t, X)
    said = [w for w in caught if "entered the refit penalized" in str(w.message)]
    assert len(said) == 1 and issubclass(said[0].category, UserWarning)
    assert "in 5 of 5 fold fits" in str(said[0].message) and said[0].filename == __file__
    assert est.refit_penalized_controls_folds_ == 5 and est.refit_mean_folds_ == 0 and est.refit_share_ == 1.0
    attrs = est.summary().attrs
    assert attrs["refit_penalized_controls_folds"] == 5 and attrs["refit_mean_folds"] == 0
    b, _ = wls_hc3(np.column_stack([np.ones(40), t, X[:, 0]]), y)
    assert abs(est.theta_ - b[1]) < est.se_  # was 1.9 SE above it (the unadjusted slope)

    y, t, X = _small_confounded(40, 3, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = PLCE(n_repeats=1, seed=0).fit(y, t, X)
    assert not [w for w in caught if "refit" in str(w.message)]
    assert est.refit_penalized_controls_folds_ == 0 and est.refit_mean_folds_ == 0
    assert est.theta_ == pytest.approx(1.1554, abs=5e-5)  # as before the change


def test_union_refit_penalizes_only_the_controls_in_the_least_squares_refit():
    """refit='union_ols' with too many controls for unpenalized columns: the selected columns stay unpenalized and the
    controls are penalized (PartialRidgeCV with the union free); refit='union' penalizes both together (RidgeCV)."""
    from types import SimpleNamespace

    from sklearn.linear_model import RidgeCV

    from pyrozoo.causal.crossfit import CrossFitPredictions
    from pyrozoo.causal.partial_ridge import DEFAULT_ALPHAS, PartialRidgeCV
    from pyrozoo.causal.plce import union_refit

    rng = np.random.default_rng(1)
    n = 100
    folds = make_folds(n, 2, 1, seed=0)
    design, controls = rng.standard_normal((n, 3)), rng.standard_normal((n, 20))
    y, t = design[:, 1] + rng.standard_normal(n), controls[:, 0] + rng.standard_normal(n)
    one = SimpleNamespace(selected_=np.array([False, True, False]))
    cf = CrossFitPredictions({"y": np.zeros((1, n)), "t": np.zeros((1, n))}, folds,
                             {"y": [[one, one]], "t": [[one, one]]})
    ols, _, counts = union_refit(cf, design, y, t, controls=controls, ridge=False)
    rdg, _, _ = union_refit(cf, design, y, t, controls=controls, ridge=True)
    assert counts["penalized_controls"] == 2
    for k in range(2):
        train, test = folds[0] != k, folds[0] == k
        free_first = np.column_stack([design[:, 1], controls])
        want = PartialRidgeCV(n_free=1).fit(free_first[train], t[train]).predict(free_first[test])
        np.testing.assert_allclose(ols.predictions["t"][0, test], want, atol=1e-10)
        together = np.column_stack([controls, design[:, 1]])
        want = RidgeCV(alphas=DEFAULT_ALPHAS).fit(together[train], t[train]).predict(together[test])
        np.testing.assert_allclose(rdg.predictions["t"][0, test], want, atol=1e-10)


def test_a_refit_to_the_training_mean_warns_and_is_counted():
    """Without the linear controls, a fold where neither learner selects a column refits both nuisances to the
    training mean: that fold's residuals are not adjusted for x. It happened silently; now fit warns once, saying in
    how many fold fits, and records the count (refit_mean_folds_, also in summary().attrs)."""
    y, t, X = _small_confounded(40, 10, 1)
    with pytest.warns(UserWarning, match=r"in 1 of 5 fold fits .* training mean") as caught:
        est = PLCE(n_repeats=1, seed=1, linear_controls=False).fit(y, t, X)
    assert sum("training mean" in str(w.message) for w in caught) == 1
    assert est.refit_mean_folds_ == 1 and est.refit_penalized_controls_folds_ == 0
    assert est.summary().attrs["refit_mean_folds"] == 1


def test_sensitivity_uses_the_classical_t_of_each_split_and_the_median():
    """partial R^2 = t^2 / (t^2 + df) and the robustness values hold for the classical OLS t only; they were computed
    from the HC3 t (theta / se), which gave 0.04 where the regression's partial R^2 was 0.31. Now, per split, the
    weighted regression ry ~ rt (no intercept, df = n - 1) by hand, then the median over the splits."""
    from scipy import stats

    rng = np.random.default_rng(4)
    n = 300
    X = rng.standard_normal((n, 3))
    t = X[:, 0] + (0.3 + np.abs(X[:, 1])) * rng.standard_normal(n)
    y = 2 * t * (1 + 0.5 * X[:, 2]) + X[:, 0] + (0.5 + X[:, 1] ** 2) * rng.standard_normal(n)
    est = PLCE(fast_learner(), basis="linear", n_folds=3, n_repeats=3,
               treatment_model="heteroskedastic").fit(y, t, X)
    df = n - 1
    f_crit = stats.t.ppf(0.975, df - 1) / np.sqrt(df - 1)
    r2s, ts, rvs, rvas = [], [], [], []
    for r in range(3):
        ry, rt, w = est.y_resid_[r], est.t_resid_[r], est.weights_[r]
        b = (w * rt * ry).sum() / (w * rt**2).sum()
        rss = (w * (ry - b * rt) ** 2).sum()
        r2s.append(1 - rss / (w * ry**2).sum())  # the regression's own (uncentred) partial R^2
        ts.append(b / np.sqrt(rss / df / (w * rt**2).sum()))
        f = abs(ts[-1]) / np.sqrt(df)
        rvs.append(0.5 * (np.sqrt(f**4 + 4 * f**2) - f**2))
        fa = f - f_crit
        assert 0 < fa and f < 1 / f_crit  # the middle branch of RV_{q,alpha}
        rvas.append(0.5 * (np.sqrt(fa**4 + 4 * fa**2) - fa**2))
    s = est.sensitivity()
    assert s["partial_r2_treatment"] == pytest.approx(np.median(r2s), rel=1e-10)
    assert s["t_stat"] == pytest.approx(np.median(ts), rel=1e-10)
    assert s["rv_q"] == pytest.approx(np.median(rvs), rel=1e-10)
    assert s["rv_q_alpha"] == pytest.approx(np.median(rvas), rel=1e-10)
    assert s["df"] == df and s["n_splits"] == 3
    # the HC3 t differs by more than a third here: the old figures were far off
    assert abs(est.theta_ / est.se_) < 0.67 * abs(s["t_stat"])


def test_sensitivity_matches_sensemakr_on_a_hand_computed_case():
    """sensemakr's robustness_value(t_statistic = 5, dof = 102) is 0.387467 (as tipr's r_value(0.5, 0.1, 102)
    documents); partial R^2 = 25 / 127; RV_{1,0.05} by hand with f = 5 / sqrt(102) - t*_{0.05,101} / sqrt(101)."""
    from scipy import stats

    s = sensitivity(0.5, 0.1, 102)
    assert s["rv_q"] == pytest.approx(0.387467, abs=1e-6)
    assert s["partial_r2_treatment"] == pytest.approx(25 / 127, rel=1e-12)
    f = 5 / np.sqrt(102) - stats.t.ppf(0.975, 101) / np.sqrt(101)
    assert s["rv_q_alpha"] == pytest.approx(0.5 * (np.sqrt(f**4 + 4 * f**2) - f**2), rel=1e-12)
    assert s["rv_q_alpha"] == pytest.approx(0.25665, abs=1e-5)


def test_any_two_valued_treatment_gets_the_binary_model_and_theta_per_unit_of_its_coding():
    """Only a 0/1 treatment was recognised as binary: coded 1/2, 0/10 or -1/1 it silently got the continuous variance
    model (estimate 2.014 instead of 2.086 per treated-vs-control contrast). Now any two-valued treatment gets
    Var(t | x) = (b - a)^2 p (1 - p), and theta is per unit of t as coded: the 0/1 theta / (b - a), SE likewise."""
    rng = np.random.default_rng(5)
    n = 300
    X = rng.standard_normal((n, 3))
    t01 = (rng.uniform(size=n) < 1 / (1 + np.exp(-X[:, 0]))).astype(float)
    y = 2 * t01 * (1 + 0.5 * X[:, 1]) + X[:, 0] + 0.5 * X[:, 1] ** 2 + rng.standard_normal(n)
    fits = {}
    for a, b in ((0, 1), (1, 2), (0, 10), (-1, 1)):
        est = PLCE(fast_learner(), basis="linear", n_folds=3, n_repeats=2,
                   treatment_model="heteroskedastic").fit(y, a + (b - a) * t01, X)
        assert est.binary_treatment_
        fits[a, b] = est
    ref = fits[0, 1]
    for (a, b), est in fits.items():
        assert est.theta_ * (b - a) == pytest.approx(ref.theta_, rel=1e-8)
        assert est.se_ * (b - a) == pytest.approx(ref.se_, rel=1e-8)
        np.testing.assert_allclose(est.treatment_variance_, (b - a) ** 2 * ref.treatment_variance_, rtol=1e-8)


def test_split_aggregation_is_chernozhukov_median_rule_not_current_doublemls():
    """The docs said splits are aggregated "as DoubleML does"; PLCE uses se^2 = median_r(V_r + (theta_r - theta)^2)
    (Chernozhukov et al. 2018), while DoubleML 0.11 takes se = (median_r(theta_r + 1.96 se_r) - theta) / 1.96. The
    two agree for one split and differ for several (the docs now say so)."""
    th, se = np.array([1.0, 1.4, 0.7, 1.1, 2.0]), np.array([0.2, 0.5, 0.1, 0.3, 0.25])
    theta, s = aggregate_splits(th, se**2)
    assert theta == 1.1 and s == pytest.approx(np.sqrt(np.median(se**2 + (th - 1.1) ** 2)), rel=1e-12)
    dml_se = (np.median(th + 1.96 * se) - 1.1) / 1.96
    assert abs(s - dml_se) > 0.05
    est = pytest.importorskip("doubleml.utils._estimation")
    _, dml_ses = est._aggregate_coefs_and_ses(th[None, :], se[None, :])
    assert dml_ses[0] == pytest.approx(dml_se, rel=1e-12)
    _, one = est._aggregate_coefs_and_ses(th[None, :1], se[None, :1])
    assert one[0] == pytest.approx(aggregate_splits(th[:1], se[:1] ** 2)[1], rel=1e-12)


def test_a_fold_whose_union_is_too_large_is_not_refitted_and_warns():
    """A fold whose selected union alone exceeds max_refit_fraction x (training rows) skips the refit and the linear
    controls, keeping the learner's predictions; that was silent (n = 60, 3 covariates, K = 2: refit_share 0.5, no
    warning) while the two other fallbacks warn. Now union_refit counts such folds, and fit warns once and records
    the count (refit_skipped_folds_, also in summary().attrs)."""
    import warnings
    from types import SimpleNamespace

    from pyrozoo.causal.crossfit import CrossFitPredictions
    from pyrozoo.causal.plce import union_refit

    rng = np.random.default_rng(0)
    n = 40
    folds = make_folds(n, 2, 1, seed=0)
    design = rng.standard_normal((n, 12))
    y, t = rng.standard_normal(n), rng.standard_normal(n)
    wide = SimpleNamespace(selected_=np.arange(12) < 6)  # 6 columns > 0.25 x 20 training rows
    narrow = SimpleNamespace(selected_=np.arange(12) < 2)
    cf = CrossFitPredictions({"y": np.zeros((1, n)), "t": np.ones((1, n))}, folds,
                             {"y": [[wide, narrow]], "t": [[narrow, narrow]]})
    out, share, counts = union_refit(cf, design, y, t)
    assert counts["union_too_large"] == 1 and share == 0.5
    np.testing.assert_array_equal(out.predictions["y"][0, folds[0] == 0], 0.0)  # kept the learner's predictions
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    t = X[:, 0] + rng.normal(size=60)
    y = t + X[:, 0] + rng.normal(size=60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = PLCE(n_folds=2, n_repeats=1).fit(y, t, X)
    skipped = [w for w in caught if "were not refitted" in str(w.message)]
    assert len(skipped) == 1 and "in 1 of 2 fold fits" in str(skipped[0].message)
    assert est.refit_skipped_folds_ == 1 and est.refit_share_ == 0.5
    assert est.summary().attrs["refit_skipped_folds"] == 1


@pytest.mark.parametrize("random_effects", [True, None])
def test_random_effects_with_a_single_group_are_refused_before_any_work(random_effects, no_fit_learner):
    """All rows in one group: the random intercept is the intercept itself, so the fit was silently that of
    groups=None while summary().attrs said random_effects=True. Now refused before any fit, whether random effects
    were asked (True) or on by default (None)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    t = X[:, 0] + rng.standard_normal(40)
    y = t + rng.standard_normal(40)
    for groups in (np.zeros(40), pd.Series(["a"] * 40)):
        with pytest.raises(PyrozooError, match=r"^groups: .*needs? at least 2 distinct group ids; got a single group "
                                               r"\((0\.0|'a')\) for all 40 rows"):
            PLCE(no_fit_learner, basis="linear", n_folds=2, n_repeats=1,
                 random_effects=random_effects).fit(y, t, X, groups=groups)
    est = PLCE(fast_learner(), basis="linear", n_folds=2, n_repeats=1,
               random_effects=random_effects).fit(y, t, X, groups=np.arange(40) % 2)
    assert est.summary().attrs["random_effects"] is True


def _rare_dummy_data(rows):
    """The QA reproducer: y = t + a^2 + e, t = a + v, and a dummy ``rare`` that is 1 on ``rows`` only."""
    rng = np.random.default_rng(0)
    n = 200
    X = pd.DataFrame(rng.normal(size=(n, 2)), columns=["a", "b"])
    X["rare"] = 0.0
    X.loc[rows, "rare"] = 1.0
    t = X.a + rng.normal(size=n)
    y = t + X.a**2 + rng.normal(size=n)
    return y, t, X


def test_a_dummy_with_three_ones_does_not_ruin_the_estimate():
    """A dummy with 3 ones in 200 rows gave the quadratic basis 4 products (a*rare, a^2*rare, ...) fitted to the same
    2-3 training rows; the held-out row got a treatment residual of -9.1 (sd 1) and one split's estimate was -0.36
    (0.95 without the column). The products are now left out with one warning naming the covariate; the
    estimate is that of the fit without the column within a fraction of its SE (0.075)."""
    y, t, X = _rare_dummy_data([3, 4, 5])
    with pytest.warns(UserWarning, match=r"PLCE: 4 product column\(s\) .* rare \(3 rows\): a\*rare, b\*rare, "
                                         r"a\^2\*rare, b\^2\*rare") as caught:
        est = PLCE(n_folds=5, n_repeats=2).fit(y, t, X)
    assert sum("product column" in str(w.message) for w in caught) == 1
    without = PLCE(n_folds=5, n_repeats=2).fit(y, t, X[["a", "b"]])
    assert "rare" in list(est.basis_.get_feature_names_out(list(X.columns)))  # its own column stays
    np.testing.assert_allclose(est.thetas_, without.thetas_, atol=0.03)  # measured: 0.954, 0.952 vs 0.947, 0.938
    assert np.abs(est.t_resid_).max() < 5  # measured 3.95, as without the column


@pytest.mark.parametrize("basis", ["spline", "linear"])
def test_a_category_with_a_single_row_is_fitted_not_refused_mid_fit(basis):
    """A dummy with one 1 (a category with a single row) crashed the fold holding that row: 'cross-fit of 'y',
    repeat 0, fold 1 (...): X: column(s) [14] are constant ...; remove them', an internal basis index. Its products
    are left out of the spline basis (the warning names 'rare (1 row)'), and the fold where its own column is
    constant on the training rows fits without it; the estimate is close to the one without the column."""
    y, t, X = _rare_dummy_data([7])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = PLCE(basis=basis, n_folds=3, n_repeats=1).fit(y, t, X)
    messages = [str(w.message) for w in caught if "product column" in str(w.message)]
    if basis == "spline":
        assert len(messages) == 1 and "rare (1 row): a*rare, b*rare, a^2*rare, b^2*rare" in messages[0]
    else:
        assert messages == []
    without = PLCE(basis=basis, n_folds=3, n_repeats=1).fit(y, t, X[["a", "b"]])
    assert abs(est.theta_ - without.theta_) < 0.5 * without.se_


def test_a_custom_basis_with_a_constant_column_is_checked_before_the_cross_fit(no_fit_learner):
    """PolynomialFeatures(2) (include_bias=True) puts a constant column first; the fit failed only in the first
    fold's learner, naming 'column(s) [0]' of a design the user never built. The basis output is now checked right
    after it is built: a constant column is left out with a warning naming it (the nuisances fit their own
    intercept), giving the fit without it exactly; an output of the wrong shape, or all constant, is refused before
    any fit."""
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.preprocessing import PolynomialFeatures

    rng = np.random.default_rng(0)
    n = 90
    X = rng.normal(size=(n, 2))
    t = X[:, 0] + rng.normal(size=n)
    y = t + X[:, 0] ** 2 + rng.normal(size=n)
    with pytest.warns(UserWarning, match=r"PLCE: basis: 1 constant column\(s\) of PolynomialFeatures's output left "
                                         r"out \('1'\): the nuisances"):
        est = PLCE(basis=PolynomialFeatures(2), n_folds=3, n_repeats=1).fit(y, t, X)
    plain = PLCE(basis=PolynomialFeatures(2, include_bias=False), n_folds=3, n_repeats=1).fit(y, t, X)
    assert est.theta_ == plain.theta_ and est.se_ == plain.se_ and est.n_features_basis_ == 5

    class Rows(TransformerMixin, BaseEstimator):
        def __init__(self, out):
            self.out = out

        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return self.out

    for out, match in [(np.ones((n - 1, 2)), r"basis: expected Rows.fit_transform\(X\) to return one row per "
                                             r"observation .* got shape \(89, 2\)"),
                       (np.ones((n, 2)), r"basis: every column of Rows's output is constant \(#0, #1\)")]:
        with pytest.raises(PyrozooError, match=match):
            PLCE(no_fit_learner, basis=Rows(out), n_folds=3, n_repeats=1, refit="union").fit(y, t, X)


def test_whites_regressors_leave_out_the_products_of_a_rare_dummy():
    """White's regressors (the default treatment-variance model, least squares, and the orthogonal stage) held the
    products a*rare, b*rare of a dummy with 3 ones: the cross-fitted variance regression fitted them to the 2-3
    training rows and the stacked SE of the heteroskedastic model was 0.42 (0.084 without the column). They are
    now left out by the basis's rule (named in the same single warning); other products are kept."""
    from pyrozoo.causal.extensions import sparse_pairs, white_features

    y, t, X = _rare_dummy_data([3, 4, 5])
    assert sparse_pairs(X.to_numpy(), 10) == [(0, 2, 3), (1, 2, 3)]
    full, kept = white_features(X.to_numpy()), white_features(X.to_numpy(), 10)
    assert full.shape[1] == kept.shape[1] + 2
    dense = X[["a", "b"]].to_numpy()
    np.testing.assert_array_equal(white_features(dense, 10), white_features(dense))
    with pytest.warns(UserWarning, match=r"PLCE: 6 product column\(s\) .* of White's regressors \(treatment-variance "
                                         r"model\), a\*rare \(3 rows\), b\*rare \(3 rows\)"):
        est = PLCE(n_folds=5, n_repeats=2, treatment_model="heteroskedastic").fit(y, t, X)
    without = PLCE(n_folds=5, n_repeats=2, treatment_model="heteroskedastic").fit(y, t, X[["a", "b"]])
    assert est.se_ < 1.2 * without.se_  # measured 0.082 vs 0.084 (0.42 before)
    assert abs(est.theta_ - without.theta_) < 0.5 * without.se_


def _classical_t(est: PLCE) -> list[float]:
    """Each split's classical t of the weighted no-intercept regression ry ~ rt (df = n - 1), by hand."""
    ts = []
    for ry, rt, w in zip(est.y_resid_, est.t_resid_, est.weights_, strict=True):
        b = (w * rt * ry).sum() / (w * rt**2).sum()
        rss = (w * (ry - b * rt) ** 2).sum()
        ts.append(float(b / np.sqrt(rss / (est.n_ - 1) / (w * rt**2).sum())))
    return ts


@pytest.mark.parametrize("n_repeats", [3, 2])
def test_sensitivity_reports_one_splits_consistent_figures(n_repeats):
    """sensitivity() reports the figures of the split whose |t| is the median (the lower median for even R), so
    that partial R^2 = t^2 / (t^2 + df) and RV_q, RV_{q,alpha} hold on the reported numbers. With a zero effect the
    splits disagree in sign (t = 0.947, -0.676, 0.134): separate medians gave t_stat 0.134 with the partial R^2
    0.0077 of |t| = 0.676 (t^2 / (t^2 + df) = 0.0003)."""
    rng = np.random.default_rng(0)
    n = 60
    X = rng.normal(size=(n, 2))
    t = X[:, 0] + rng.normal(size=n)
    y = X[:, 0] + rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = PLCE(n_folds=2, n_repeats=n_repeats, seed=0, basis="linear").fit(y, t, X)
    ts = _classical_t(est)
    s = est.sensitivity()
    df = n - 1
    if n_repeats == 3:
        np.testing.assert_allclose(ts, [0.947, -0.676, 0.134], atol=5e-4)  # the splits disagree in sign
        assert s["split"] == 1
    else:
        assert s["split"] == int(np.argmin(np.abs(ts)))  # the lower of the two: the more conservative
    assert s["t_stat"] == pytest.approx(ts[s["split"]], rel=1e-10) and s["n_splits"] == n_repeats
    assert s["partial_r2_treatment"] == pytest.approx(s["t_stat"] ** 2 / (s["t_stat"] ** 2 + df), rel=1e-12)
    assert s["rv_q"] == pytest.approx(robustness_value(s["t_stat"], df), rel=1e-12)
    assert s["rv_q_alpha"] == pytest.approx(robustness_value(s["t_stat"], df, alpha=est.alpha), rel=1e-12)


def _whites_warning(**kwargs) -> list[str]:
    """The 'product column(s) left out' warnings of a PLCE fit on a continuous x0 and a dummy x1 with 4 ones."""
    rng = np.random.default_rng(0)
    n = 200
    X = np.column_stack([rng.normal(size=n), np.zeros(n)])
    X[:4, 1] = 1.0
    t = kwargs.pop("t", X[:, 0] + rng.normal(size=n))
    y = t + rng.normal(size=n)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PLCE(fast_learner(), basis="linear", n_repeats=1, **kwargs).fit(y, t, X)
    return [str(w.message) for w in caught if "product column(s) left out" in str(w.message)]


@pytest.mark.parametrize(("kwargs", "uses"), [
    ({"treatment_model": "heteroskedastic"}, "treatment-variance model"),
    ({"final_stage": "orthogonal"}, "varying effect"),
    ({"treatment_model": "heteroskedastic", "final_stage": "orthogonal"}, "treatment-variance model, varying effect"),
])
def test_the_sparse_warning_names_only_the_uses_of_whites_regressors_that_apply(kwargs, uses):
    """White's regressors serve the continuous treatment's variance model and the orthogonal stage's varying
    effect; the warning said "(treatment-variance model, varying effect)" whichever applied."""
    (message,) = _whites_warning(**kwargs)
    assert f"of White's regressors ({uses}), x0*x1 (4 rows)." in message


def test_a_binary_treatments_variance_model_takes_no_whites_regressors_and_is_not_warned_about():
    """A two-valued treatment's variance is p (1 - p), without White's regressors: nothing of them to leave out."""
    t = (np.random.default_rng(1).random(200) < 0.5).astype(float)
    assert _whites_warning(t=t, treatment_model="heteroskedastic") == []
    (message,) = _whites_warning(t=t, treatment_model="heteroskedastic", final_stage="orthogonal")
    assert "of White's regressors (varying effect), x0*x1 (4 rows)." in message


def test_custom_basis_and_random_effects_wording(no_fit_learner):
    """A constant column of a custom basis is named by its output name without "column numbers from 0", and by
    position (#j) with it; random_effects=True "needs" 2 groups, random effects on by default "need" them."""
    from sklearn.base import BaseEstimator, TransformerMixin

    class Unnamed(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return np.column_stack([np.ones(len(X)), X])

    rng = np.random.default_rng(0)
    n = 60
    X = rng.normal(size=(n, 2))
    t = X[:, 0] + rng.normal(size=n)
    y = t + rng.normal(size=n)
    with pytest.warns(UserWarning, match=r"output left out \(#0; column numbers from 0\): the nuisances"):
        PLCE(fast_learner(), basis=Unnamed(), n_folds=2, n_repeats=1).fit(y, t, X)
    for random_effects, verb in ((True, "random_effects=True needs"), (None, "random_effects=None\\) need")):
        with pytest.raises(PyrozooError, match=rf"^groups: .*{verb} at least 2 distinct group ids"):
            PLCE(no_fit_learner, basis="linear", n_folds=2, n_repeats=1,
                 random_effects=random_effects).fit(y, t, X, groups=np.zeros(n))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"heterogeneous": "false"}, "heterogeneous: expected True or False, got 'false'"),
    ({"random_effects": None}, "random_effects: expected True or False, got None"),
    ({"interference": 1}, "interference: expected True or False, got 1"),
    ({"nu": "1", "interference": True}, "nu: expected a finite value > 0, got the string '1'"),
    ({"nu": -5}, "nu: expected a finite value > 0, got -5"),
    ({"nu": float("nan")}, "nu: expected a finite value > 0, got nan"),
    ({"nu": float("inf"), "interference": True}, "nu: expected a finite value > 0, got inf"),
])
def test_simulate_plce_refuses_non_bool_flags_and_bad_nu(kwargs, message):
    """simulate_plce cast its flags with bool() ("false" turned the effect heterogeneous, None was False) and checked
    nu only inside the interference kernel (a raw TypeError for "1", nu=-5 accepted with interference off): each is
    now one PyrozooError naming the argument, before anything is drawn."""
    with pytest.raises(PyrozooError) as info:
        simulate_plce(0, "baseline", n=100, **kwargs)
    assert str(info.value) == message


def test_simulate_plce_accepts_numpy_bools_and_nu():
    d = simulate_plce(0, "baseline", n=100, interference=np.bool_(True), heterogeneous=False, nu=np.float64(0.5))
    assert d.flags["interference"] and not d.flags["heterogeneous"]


def test_split_aggregation_is_not_older_doublemls_either():
    """The docs said older DoubleML releases used PLCE's rule. They computed se = sqrt(median_r(se_r^2 n +
    (theta_r - theta)^2) / n), i.e. the spread term divided by n; PLCE's se^2 = median_r(V_r + (theta_r - theta)^2)
    (Chernozhukov et al. 2018, V_r on theta's scale) is larger when the splits disagree and equal for one split.
    Checked on a fitted estimator (baseline design, n = 300, R = 3; ridge nuisances for speed: the docs' example,
    0.0631 vs 0.0589, uses the default learner)."""
    d = simulate_plce(1, "baseline", n=300)
    est = PLCE(fast_learner(), n_repeats=3, n_folds=3, seed=2).fit(d.y, d.t, d.X)
    th, v, n = est.thetas_, est.variances_, est.n_
    assert est.theta_ == pytest.approx(np.median(th), rel=1e-12)
    assert est.se_ == pytest.approx(np.sqrt(np.median(v + (th - est.theta_) ** 2)), rel=1e-12)
    older_dml = np.sqrt(np.median(v * n + (th - est.theta_) ** 2) / n)
    assert older_dml == pytest.approx(np.sqrt(np.median(v + (th - est.theta_) ** 2 / n)), rel=1e-12)
    assert np.ptp(th) > 0 and est.se_ > older_dml
    assert aggregate_splits(th[:1], v[:1])[1] == pytest.approx(np.sqrt(v[0]), rel=1e-12)
