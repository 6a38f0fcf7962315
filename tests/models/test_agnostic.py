"""Agnostic classifier: gradient reversal layer, eq. (1) gradients, alpha = 0 is a plain classifier, data tasks, bad
input, and (seeded) a high alpha removes the protected concept from the features as seen by a fresh probe."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Predictive

from pyrozoo.config import RunConfig
from pyrozoo.data.agnostic_tasks import cps1985_task, digits_task, make_agnostic_data
from pyrozoo.errors import PyrozooError
from pyrozoo.models.agnostic import (
    AgnosticNetwork,
    AlphaSchedule,
    agnostic_entry,
    agnostic_model,
    check_alpha,
    grad_reverse,
    load_digits_task,
    make_agnostic_guide,
    pointwise_log_likelihood,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ------------------------------------------------------------------------------------------ gradient reversal
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_is_identity_forward_and_negates_gradient(lam):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    out = grad_reverse(x, lam)
    assert torch.equal(out, x)
    (out * w).sum().backward()
    assert torch.allclose(x.grad, -lam * w)


def test_gradient_reversal_inside_a_composite_function():
    """d/dx f(R(g(x))) = -lam f'(g(x)) g'(x): compare with the plain chain rule."""
    x = torch.linspace(-1, 1, 7, dtype=torch.float64, requires_grad=True)
    (torch.sin(grad_reverse(x**2, 0.7))).sum().backward()
    assert torch.allclose(x.grad, -0.7 * torch.cos(x.detach() ** 2) * 2 * x.detach())


# --------------------------------------------------------------------------------------- eq. (1) gradients
def _small_task():
    """A tiny two-part table task: 12 target rows (3 with protected labels), 8 context rows."""
    gen = np.random.default_rng(0)
    x = gen.standard_normal((20, 4)).astype(np.float32)
    y = np.r_[gen.integers(0, 2, 12), -np.ones(8)]
    p = np.r_[-np.ones(9), gen.integers(0, 2, 3), gen.integers(0, 2, 8)]
    y[:2], p[-2:] = (0, 1), (0, 1)  # both classes present
    data = make_agnostic_data(x, y, p)
    torch.manual_seed(0)
    data.inputs["net"] = AgnosticNetwork.for_inputs(data.inputs["x"], feature_dim=5, hidden=6).double()
    data.inputs["x"] = data.inputs["x"].double()
    data.inputs["protected_weight"] = data.inputs["protected_weight"].double()
    return data


def _heads(data):
    pyro.set_rng_seed(1)
    tr = poutine.trace(agnostic_model).get_trace(**data.model_kwargs(observed=False))
    return {k: tr.nodes[k]["value"].detach() for k in ("w_y", "b_y", "w_p", "b_p")}


def _extractor_grad(loss, net):
    net.zero_grad()
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in net.extractor.parameters()])


def _model_grad_and_target_ce(data, heads, factor: str, **opts):
    """The extractor's gradient of the model's negative log joint (heads fixed; observed sites y, p and the factor
    site ``factor``) under ``opts``, and the summed target cross-entropy CE_y written by hand."""
    kw, net = data.model_kwargs(), data.inputs["net"]
    tr = poutine.trace(poutine.condition(agnostic_model, heads)).get_trace(**{**kw, **opts})
    tr.compute_log_prob()
    obs_lp = tr.nodes["y"]["log_prob"].sum() + tr.nodes["p"]["log_prob"].sum() + tr.nodes[factor]["log_prob"].sum()
    got = _extractor_grad(-obs_lp, net)
    z_t = net.extractor(kw["x"][kw["target_idx"]])
    return got, F.cross_entropy(z_t @ heads["w_y"].T + heads["b_y"], kw["y"], reduction="sum")


ODDS_REVERSAL = {"extractor_loss": "reversal", "adversary_weight": "odds"}


@pytest.mark.parametrize(("alpha", "scheme"), [(0.0, {}), (0.3, {}), (1.0, {}), (0.3, ODDS_REVERSAL),
                                               (0.6, ODDS_REVERSAL)])
def test_extractor_gradient_is_eq1(alpha, scheme):
    """With the heads fixed, the extractor's gradient of the model's negative log joint equals the gradient of
    (1 - alpha) CE_y - a sum_j w_j CE_p^j computed by hand in plain torch (no Pyro, no reversal layer), a the
    adversary weight: alpha by default (eq. 1), a = alpha / (1 - alpha) with extractor_loss='reversal' and
    adversary_weight='odds' (the reversal layer's lambda is the adversary weight, not alpha; a != alpha there)."""
    data = _small_task()
    kw, net, heads = data.model_kwargs(), data.inputs["net"], _heads(data)
    a = alpha / (1 - alpha) if scheme else alpha
    tr = poutine.trace(poutine.condition(agnostic_model, heads)).get_trace(**{**kw, "alpha": alpha, **scheme})
    tr.compute_log_prob()  # scaled and masked, as the ELBO sees them
    obs_lp = tr.nodes["y"]["log_prob"].sum() + tr.nodes["p"]["log_prob"].sum()
    got = _extractor_grad(-obs_lp, net)

    z_t = net.extractor(kw["x"][kw["target_idx"]])
    ce_y = F.cross_entropy(z_t @ heads["w_y"].T + heads["b_y"], kw["y"], reduction="sum")
    z_p = net.adversary(net.extractor(kw["x"][kw["protected_idx"]]))
    ce_p = F.cross_entropy(z_p @ heads["w_p"].T + heads["b_p"], kw["p"], reduction="none")
    want = _extractor_grad((1 - alpha) * ce_y - a * (kw["protected_weight"] * ce_p).sum(), net)
    assert torch.allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("scheme", [{}, {"extractor_loss": "moments+reversal", "target_weight": "one",
                                         "adversary_weight": "odds", "max_adversary_weight": 100.0}])
def test_alpha_zero_is_a_plain_classifier(scheme):
    """At alpha = 0 the ELBO's gradients for the extractor and the target head's variational parameters equal
    those of a plain Bayesian classifier (the same model with no protected rows), at the same guide draws; under
    eq. 1's scheme and under the entry's default (odds weight, moment matching plus the reversal layer)."""
    from pyro.infer import TraceMeanField_ELBO

    from pyrozoo.models.agnostic import make_agnostic_guide

    data = _small_task()
    kw = {**data.model_kwargs(), "alpha": 0.0, **scheme}
    plain_kw = {**kw, "protected_idx": kw["protected_idx"][:0], "p": kw["p"][:0],
                "protected_weight": kw["protected_weight"][:0]}
    grads = []
    for kwargs in (kw, plain_kw):
        pyro.clear_param_store()
        guide = make_agnostic_guide(agnostic_model)
        pyro.set_rng_seed(3)
        loss = TraceMeanField_ELBO().differentiable_loss(agnostic_model, guide, **kwargs)
        names = [n for n in pyro.get_param_store() if "extractor" in n or n.endswith("w_y") or n.endswith("b_y")]
        params = [pyro.param(n).unconstrained() for n in names]
        grads.append(dict(zip(names, torch.autograd.grad(loss, params), strict=True)))
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) >= 8
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-8), name


def test_alpha_schedules():
    lin = AlphaSchedule(0.8, "linear", ramp=0.5, progress=0.0)
    assert float(lin) == 0.0 and lin.value(0.25) == pytest.approx(0.4) and lin.value(0.9) == pytest.approx(0.8)
    dann = AlphaSchedule(1.0, "dann")
    for q in (0.0, 0.1, 0.5, 1.0):
        assert dann.value(q) == pytest.approx(2 / (1 + math.exp(-10 * q)) - 1)
    assert AlphaSchedule(0.3, "constant").value(0.0) == 0.3


# ------------------------------------------------------------------------------------------------ data tasks
def test_digits_task_shapes_and_correlations():
    data = digits_task(0)
    x, splits = data.inputs["x"], data.meta["splits"]
    assert x.shape[1:] == (2, 8, 8) and data.inputs["num_classes"] == 2 and data.inputs["num_protected"] == 2
    # two-part training set: target-labelled rows carry no protected label by default, context rows no target
    assert not set(data.inputs["target_idx"].tolist()) & set(data.inputs["protected_idx"].tolist())
    # the background colour is the channel with more mass on the background
    def colour(imgs):
        return (imgs[:, 1] - imgs[:, 0]).mean((-1, -2)) > 0

    y_train = data.observed["y"]
    c_train = colour(x[data.inputs["target_idx"]]).long()
    agree = (c_train == y_train).float().mean()
    n = y_train.numel()
    assert abs(float(agree) - 0.95) < 4 * math.sqrt(0.95 * 0.05 / n)
    for name, rate in (("test_correlated", 0.95), ("test_decorrelated", 0.5), ("test_reversed", 0.05),
                       ("probe", 0.5)):
        part = splits[name]
        assert torch.equal(colour(part["x"]).long(), part["p"])  # rendering matches the label
        m = part["y"].numel()
        assert abs(float((part["p"] == part["y"]).float().mean()) - rate) < 4 * math.sqrt(0.25 / m)


def test_cps1985_task():
    data = cps1985_task(0)
    assert data.inputs["x"].dim() == 2 and "gender" not in " ".join(data.meta["feature_names"])
    y, p = data.observed["y"], data.observed["p"]
    assert set(y.tolist()) == {0, 1} and set(p.tolist()) == {0, 1}
    sizes = [data.inputs["x"].shape[0]] + [s["x"].shape[0] for s in data.meta["splits"].values()]
    assert sum(sizes) == 534


# ------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "high", True])
def test_alpha_outside_unit_interval(alpha):
    with pytest.raises(PyrozooError, match="alpha"):
        check_alpha(alpha)
    with pytest.raises(PyrozooError, match="alpha"):
        load_digits_task(0, alpha=alpha)


def test_alpha_checked_before_fitting():
    entry = agnostic_entry()
    cfg = RunConfig(model="agnostic", device="cpu", progress=False, steps=1, options={"alpha": 2.0})
    with pytest.raises(PyrozooError, match=r"alpha: expected a number in \[0, 1\]"):
        entry.load_data(entry.check_config(cfg))


def test_target_labels_with_one_class():
    x = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(PyrozooError, match="y: expected target labels with at least 2 classes, got only class 1"):
        make_agnostic_data(x, np.ones(10), np.r_[np.zeros(5), np.ones(5)])


def test_protected_labels_missing_for_all_rows():
    x = np.random.default_rng(0).standard_normal((10, 3))
    y = np.r_[np.zeros(5), np.ones(5)]
    for p in (None, -np.ones(10), np.full(10, np.nan)):
        with pytest.raises(PyrozooError, match="p: protected labels are missing for all rows"):
            make_agnostic_data(x, y, p)


def test_other_bad_labels():
    x = np.random.default_rng(0).standard_normal((10, 3))
    y = np.r_[np.zeros(5), np.ones(5)]
    with pytest.raises(PyrozooError, match="p: expected protected labels with at least 2 classes"):
        make_agnostic_data(x, y, np.zeros(10))
    with pytest.raises(PyrozooError, match="y: expected 10 labels"):
        make_agnostic_data(x, y[:4], y)
    with pytest.raises(PyrozooError, match="non-integers"):
        make_agnostic_data(x, y + 0.5, y)
    with pytest.raises(PyrozooError, match="x: expected finite"):
        make_agnostic_data(np.full((10, 3), np.inf), y, y)


def test_bad_held_out_splits():
    """A split without x was KeyError 'x', an array in place of the {x, y, p} table an IndexError."""
    x = np.random.default_rng(0).standard_normal((10, 3))
    y = np.r_[np.zeros(5), np.ones(5)]
    cases = [({"test": {"y": y}}, r"splits\[test\]: expected inputs under 'x'"),
             ({"test": x}, r"splits\[test\]: expected a mapping with keys x, y, p, got ndarray"),
             ({"test": {"x": x, "labels": y}}, r"splits\[test\]: unknown key\(s\) labels"),
             ([("test", {"x": x})], "splits: expected a mapping")]
    for splits, match in cases:
        with pytest.raises(PyrozooError, match=match):
            make_agnostic_data(x, y, y, splits=splits)
    ds = make_agnostic_data(x, y, y, splits={"test": {"x": x, "y": y}})
    assert set(ds.meta["splits"]["test"]) == {"x", "y"}


# ---------------------------------------------------------------------------------------- log-likelihood
def test_pointwise_log_likelihood_matches_categorical():
    data = _small_task()
    kw = data.model_kwargs()
    heads = _heads(data)
    post = {k: v.expand((1, 3) + v.shape).clone() for k, v in heads.items()}
    ll = pointwise_log_likelihood(post, kw)
    net = data.inputs["net"]
    with torch.no_grad():
        logits = net.extractor(kw["x"][kw["target_idx"]]) @ heads["w_y"].T + heads["b_y"]
        want = torch.log_softmax(logits, -1).gather(-1, kw["y"][:, None]).squeeze(-1)
    assert ll["y"].shape == (1, 3, kw["y"].numel()) and ll["p"].shape == (1, 3, kw["p"].numel())
    assert np.allclose(ll["y"][0, 2], want.numpy(), atol=1e-10)


def test_head_draws_line_up_with_the_data_plates_under_vectorization():
    """Predictive(parallel=True) hands the heads as (S, C, D) (it pads draws to max_plate_nesting dims counting event
    dims), and the model's linear layer handled only (S, 1, C, D): it crashed. Both layouts now score each draw on
    its own (the vectorized log-densities of y and p equal the per-draw ones), and parallel Predictive, with fixed
    head draws or the entry's own guide, gives the sequential path's shapes."""
    data = _small_task()
    kw, obs = data.model_kwargs(observed=False), data.model_kwargs()
    n_t, n_p = kw["target_idx"].numel(), kw["protected_idx"].numel()
    S = 3
    gen = torch.Generator().manual_seed(2)
    heads = {k: torch.randn((S, *v.shape), generator=gen, dtype=v.dtype) for k, v in _heads(data).items()}
    per_draw = []
    for s in range(S):
        one = poutine.trace(poutine.condition(agnostic_model, {k: v[s] for k, v in heads.items()})).get_trace(**obs)
        one.compute_log_prob()
        per_draw.append(one)
    for layout in ("predictive", "plate"):  # (S, C, D) and Pyro's plate-aligned (S, 1, C, D)
        draws = heads if layout == "predictive" else {k: v.unsqueeze(1) for k, v in heads.items()}
        with pyro.plate("draws", S, dim=-2):
            vec = poutine.trace(poutine.condition(agnostic_model, draws)).get_trace(**obs)
        vec.compute_log_prob()
        for site, n in (("y", n_t), ("p", n_p)):
            assert vec.nodes[site]["log_prob"].shape == (S, n)
            for s in range(S):
                assert torch.allclose(vec.nodes[site]["log_prob"][s], per_draw[s].nodes[site]["log_prob"])
    par = Predictive(agnostic_model, posterior_samples=heads, parallel=True)(**kw)
    seq = Predictive(agnostic_model, posterior_samples=heads)(**kw)
    assert par["y"].shape == seq["y"].shape == (S, n_t) and par["p"].shape == seq["p"].shape == (S, n_p)
    guide = make_agnostic_guide()
    guide(**obs)
    out = Predictive(agnostic_model, guide=guide, num_samples=S, parallel=True)(**kw)
    assert out["y"].shape == (S, n_t) and out["p"].shape == (S, n_p)


def test_predict_proba_takes_numpy_inputs():
    from pyrozoo.models.agnostic import predict_proba

    data = _small_task()
    heads = {k: v.expand((1, 2) + v.shape).clone() for k, v in _heads(data).items()}
    x = data.inputs["x"][:4]
    net = data.inputs["net"]
    assert torch.allclose(predict_proba(net, x.numpy(), heads), predict_proba(net, x, heads))


def test_inference_data_names_the_axes():
    """The heads' weights and x carry named ArviZ axes (not ``w_y_dim_0``), for the image and the table task."""
    entry = agnostic_entry()
    for dataset, x_dims in (("digits", ("row", "channel", "height", "width")), ("cps1985", ("row", "column"))):
        cfg = entry.check_config(RunConfig(model="agnostic", dataset=dataset, progress=False, steps=3, num_samples=2))
        idata = entry.fit(entry.load_data(cfg), cfg).to_inference_data()
        post = idata.posterior
        assert post["w_y"].dims[2:] == ("class", "feature") and post["b_y"].dims[2:] == ("class",)
        assert post["w_p"].dims[2:] == ("protected_class", "adversary_unit")
        assert post["b_p"].dims[2:] == ("protected_class",)
        assert idata.constant_data["x"].dims == x_dims


# -------------------------------------------------------------------------------------- end to end (seeded)
def _fit_digits(alpha: float, lr: float | None = None, **options) -> tuple[dict, object]:
    entry = agnostic_entry()
    cfg = entry.check_config(RunConfig(model="agnostic", device="cpu", progress=False, steps=400, num_samples=20,
                                       seed=0, lr=lr, options={**options, "alpha": alpha}))
    data = entry.load_data(cfg)
    result = entry.fit(data, cfg)
    idata = result.to_inference_data()
    assert idata.log_likelihood["y"].shape == (1, 20, data.observed["y"].numel())
    return entry.metrics(result, data), result


@pytest.mark.slow
def test_high_alpha_lowers_fresh_probe_leakage_on_digits():
    """Seeded, default scheme (odds weight, moment matching): the background colour is far less recoverable by fresh
    probes from the alpha = 0.8 features than from the alpha = 0 (plain classifier) features. Two 400-step fits."""
    out = {alpha: _fit_digits(alpha)[0] for alpha in (0.0, 0.8)}
    assert out[0.0]["probe_logreg_acc"] > 0.85 and out[0.0]["probe_mlp_acc"] > 0.85  # the colour is encoded
    for probe in ("probe_logreg_acc", "probe_mlp_acc"):
        assert out[0.8][probe] < out[0.0][probe] - 0.2
        assert out[0.8][probe] < 0.7


def test_feature_saliency_of_a_linear_extractor():
    """For z = W x (one output unit dominating) the map is |W| of the strongest unit, max over channels."""
    from torch import nn

    from pyrozoo.evaluation.saliency import feature_saliency, least_correlated

    torch.manual_seed(0)
    lin = nn.Linear(2 * 4 * 4, 3, bias=False)
    with torch.no_grad():
        lin.weight[0] += 10.0  # unit 0 is the strongest for positive inputs
    ext = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(5, 2, 4, 4) + 0.5
    maps = feature_saliency(ext, x)
    want = lin.weight[0].detach().abs().reshape(2, 4, 4).amax(0).numpy()
    assert maps.shape == (5, 4, 4) and np.allclose(maps, want[None], atol=1e-6)
    # least_correlated ranks images by the correlation of their two maps: flip one image's second map and it
    # comes first (correlation -1), a noisy copy second, the unchanged ones (correlation 1) after them
    rng = np.random.default_rng(0)
    a = rng.random((5, 4, 4))
    b = a.copy()
    b[3] = -a[3]
    b[1] = a[1] + 0.5 * rng.random((4, 4))
    assert least_correlated(a, b, k=2).tolist() == [3, 1]


# ------------------------------------------------------------------------------------ two-timescale training
def test_adversary_loss_matches_pyro_elbo():
    """The plain-torch adversary loss has the gradients of TraceMeanField_ELBO on the model with frozen features
    (guide scales set tiny so that both use the same draw of the heads: the guide's locations)."""
    from pyro.infer import TraceMeanField_ELBO

    from pyrozoo.models.agnostic import adversary_loss, make_agnostic_guide

    data = _small_task()
    kw = data.model_kwargs()
    net = AgnosticNetwork.for_inputs(kw["x"], feature_dim=5, hidden=6, adversary_layers=2, standardize=True).double()
    kw["net"] = net
    n = kw["target_idx"].numel()
    with torch.no_grad():
        feats = net.features(kw["x"][kw["protected_idx"]])
    pyro.clear_param_store()
    guide = make_agnostic_guide(agnostic_model)
    with poutine.block(), torch.no_grad():
        guide(**kw)
    store = pyro.get_param_store()
    with torch.no_grad():
        for site in ("w_y", "b_y", "w_p", "b_p"):
            store.get_param(f"AutoNormal.locs.{site}").unconstrained().normal_()
            store[f"AutoNormal.scales.{site}"] = torch.full_like(store[f"AutoNormal.scales.{site}"], 1e-9)
    names = ["AutoNormal.locs.w_p", "AutoNormal.locs.b_p"]
    params = [store.get_param(k).unconstrained() for k in names] + list(net.adversary.parameters())
    adv_kw = {**kw, "protected_features": feats}
    ref = TraceMeanField_ELBO().differentiable_loss(poutine.scale(agnostic_model, 1.0 / n),
                                                    poutine.scale(guide, 1.0 / n), **adv_kw)
    got = adversary_loss(net, feats, kw["p"], kw["protected_weight"], n=n)
    g_ref = torch.autograd.grad(ref, params)
    g_got = torch.autograd.grad(got, params)
    assert len(params) == 6
    for a, b in zip(g_got, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-6), (a, b)


def test_two_timescale_training_updates_only_the_adversary_in_its_phase():
    """With adv_steps > 0 the adversary's own phase leaves the extractor and the target head untouched: one
    iteration at lr ~ 0 for the extractor changes only the adversary (its Adam steps), and the fit records it."""
    from pyrozoo.models.agnostic import make_agnostic_guide, run_agnostic_svi

    data = _small_task()
    kw = {**data.model_kwargs(), "alpha": 0.5, "batch_size": 4}
    net = kw["net"]
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    result = run_agnostic_svi(agnostic_model, make_agnostic_guide(agnostic_model), kw,
                              schedule=AlphaSchedule(0.5, "constant"), num_steps=1, lr=1e-12, adv_steps=3,
                              adv_lr=0.05, adv_reset=1, num_samples=2, progress=False)
    for k, v in net.named_parameters():
        moved = float((v.detach() - before[k]).abs().max())
        assert (moved > 1e-4) if k.startswith("adversary") else (moved < 1e-9), (k, moved)
    assert result.inference == "svi-sgd-adv3"


def test_confusion_loss_gradient():
    """extractor_loss='confusion': the extractor's gradient of the model's negative log joint is that of
    (1 - alpha) CE_y + alpha sum_j w_j CE(adversary_j, uniform) (plain torch), the adversary's weights get only
    the gradient of its own cross-entropy (features detached)."""
    data = _small_task()
    kw, net, heads = data.model_kwargs(), data.inputs["net"], _heads(data)
    alpha = 0.4
    tr = poutine.trace(poutine.condition(agnostic_model, heads)).get_trace(**{**kw, "alpha": alpha,
                                                                             "extractor_loss": "confusion"})
    tr.compute_log_prob()
    obs_lp = tr.nodes["y"]["log_prob"].sum() + tr.nodes["p"]["log_prob"].sum() + tr.nodes["confusion"]["log_prob"].sum()
    got = _extractor_grad(-obs_lp, net)
    got_adv = [g.clone() for g in (p.grad for p in net.adversary.parameters())]

    z_t = net.extractor(kw["x"][kw["target_idx"]])
    ce_y = F.cross_entropy(z_t @ heads["w_y"].T + heads["b_y"], kw["y"], reduction="sum")
    z_p = net.extractor(kw["x"][kw["protected_idx"]])
    logp = torch.log_softmax(net.adversary(z_p) @ heads["w_p"].T + heads["b_p"], -1)
    conf = -(kw["protected_weight"] * logp.mean(-1)).sum()
    want = _extractor_grad((1 - alpha) * ce_y + alpha * conf, net)
    assert torch.allclose(got, want, atol=1e-10)
    net.zero_grad()
    ce_p = F.cross_entropy(net.adversary(z_p.detach()) @ heads["w_p"].T + heads["b_p"], kw["p"], reduction="none")
    (kw["protected_weight"] * ce_p).sum().backward()
    for g, p in zip(got_adv, net.adversary.parameters(), strict=True):
        assert torch.allclose(g, p.grad, atol=1e-10)


@pytest.mark.parametrize("alpha", [0.4, 1.0])
def test_target_weight_one_gradient(alpha):
    """target_weight='one': the extractor's gradient is that of CE_y + alpha sum_j w_j CE(adversary_j, uniform),
    i.e. the target term keeps weight 1 at every alpha (also at alpha = 1, where eq. 1 masks it out)."""
    data = _small_task()
    kw, net, heads = data.model_kwargs(), data.inputs["net"], _heads(data)
    got, ce_y = _model_grad_and_target_ce(data, heads, "confusion", alpha=alpha, extractor_loss="confusion",
                                          target_weight="one")
    z_p = net.extractor(kw["x"][kw["protected_idx"]])
    logp = torch.log_softmax(net.adversary(z_p) @ heads["w_p"].T + heads["b_p"], -1)
    conf = -(kw["protected_weight"] * logp.mean(-1)).sum()
    assert torch.allclose(got, _extractor_grad(ce_y + alpha * conf, net), atol=1e-10)


def test_adversary_warmup_holds_alpha_at_zero_and_leaves_the_adversary_alone():
    """adversary_warmup = N: for the first N iterations alpha_t = 0 and the adversary is not trained; afterwards the
    schedule ramps over the remaining iterations (seeded, tiny task)."""
    from pyrozoo.models.agnostic import make_agnostic_guide, run_agnostic_svi

    pyro.clear_param_store()
    data = _small_task()
    kw = {**data.model_kwargs(), "alpha": 0.5, "batch_size": 4, "extractor_loss": "confusion"}
    net = kw["net"]
    before = {k: v.detach().clone() for k, v in net.named_parameters() if k.startswith("adversary")}
    schedule = AlphaSchedule(0.5, "linear", 0.5)
    kw["alpha"] = schedule
    result = run_agnostic_svi(agnostic_model, make_agnostic_guide(agnostic_model), kw, schedule=schedule,
                              num_steps=3, lr=0.05, adv_steps=2, adversary_warmup=3, num_samples=2, progress=False,
                              seed=0)
    assert np.all(result.fit_stats["alpha"] == 0.0)
    for k, v in net.named_parameters():
        if k.startswith("adversary"):
            assert torch.equal(v.detach(), before[k]), k
    pyro.clear_param_store()
    schedule = AlphaSchedule(0.5, "linear", 0.5)
    kw["alpha"] = schedule
    result = run_agnostic_svi(agnostic_model, make_agnostic_guide(agnostic_model), kw, schedule=schedule,
                              num_steps=6, lr=0.05, adv_steps=2, adversary_warmup=2, num_samples=2, progress=False,
                              seed=0)
    assert np.allclose(result.fit_stats["alpha"], [0.0, 0.0, 0.0, 0.25, 0.5, 0.5])
    assert float(schedule) == 0.5  # the fitted model is evaluated at the target alpha
    assert any(not torch.equal(v.detach(), before[k]) for k, v in net.named_parameters() if k in before)


@pytest.mark.parametrize("option", [{"target_weight": "half"}, {"adversary_warmup": -1},
                                    {"adversary_warmup": 1.5}])
def test_bad_target_weight_or_warmup(option):
    with pytest.raises(PyrozooError, match=next(iter(option))):
        load_digits_task(0, **option)


# ---------------------------------------------------- odds weighting, moment-matching extractor loss (default)
def test_adversary_weight_odds_and_cap():
    """adversary_weight='odds': w_a = alpha / (1 - alpha), capped, times the schedule's ramp; 'alpha' is eq. 1's."""
    from pyrozoo.models.agnostic import adversary_weight_value

    for alpha, want in ((0.0, 0.0), (0.5, 1.0), (0.75, 3.0), (0.9, 9.0), (0.99, 20.0), (1.0, 20.0)):
        assert adversary_weight_value("odds", alpha, cap=20.0) == pytest.approx(want)
        assert adversary_weight_value("alpha", alpha) == pytest.approx(alpha)
    half_way = AlphaSchedule(0.8, "linear", 0.5, progress=0.125)  # ramp at 1/4: alpha_t = 0.2
    assert adversary_weight_value("odds", half_way, cap=100.0) == pytest.approx(4.0 * 0.25)
    assert adversary_weight_value("alpha", half_way) == pytest.approx(0.2)
    with pytest.raises(PyrozooError, match="adversary_weight"):
        adversary_weight_value("huge", 0.5)


def _moment_gap_numpy(z, p):
    u = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)
    pooled = u.T @ u / len(u)
    gap = 0.0
    for k in np.unique(p):
        uk = u[p == k]
        mk = uk.mean(0)
        ck = (uk - mk).T @ (uk - mk) / len(uk)
        gap += len(uk) / len(u) * ((mk**2).sum() + ((ck - pooled) ** 2).sum() / z.shape[1])
    return gap


def test_moment_gap_against_numpy_and_zero_at_independence():
    """moment_gap equals an independent numpy computation; it is 0, with a zero gradient, when both protected
    classes hold the same feature rows, and it grows with a mean shift between the classes."""
    from pyrozoo.models.agnostic import moment_gap

    gen = np.random.default_rng(3)
    z = gen.standard_normal((40, 5))
    p = gen.integers(0, 2, 40)
    got = moment_gap(torch.as_tensor(z), torch.as_tensor(p))
    assert float(got) == pytest.approx(_moment_gap_numpy(z, p), rel=1e-10)
    twin = torch.as_tensor(np.r_[z[:20], z[:20]], dtype=torch.float64).requires_grad_(True)
    labels = torch.as_tensor(np.r_[np.zeros(20), np.ones(20)]).long()
    gap = moment_gap(twin, labels)
    gap.backward()
    assert float(gap.detach()) < 1e-20 and float(twin.grad.abs().max()) < 1e-10
    shifted = [float(moment_gap(torch.as_tensor(np.r_[z[:20], z[:20] + d]), labels)) for d in (0.1, 0.5, 1.0)]
    assert 0 < shifted[0] < shifted[1] < shifted[2]


def test_weighted_moment_gap_is_the_unweighted_gap_of_the_repeated_rows():
    """moment_gap's row weights are frequency weights: it normalizes them to w_i / sum w and uses them in the pooled
    mean and sd, the class shares pi_k and the class moments, so integer weights w_i must give exactly the
    unweighted gap (the numpy reference above, population moments) of the rows repeated w_i times (float64, rel
    1e-10). The weights are unequal across the classes so that unweighted class shares or an unweighted sd differ."""
    from pyrozoo.models.agnostic import moment_gap

    gen = np.random.default_rng(5)
    z = gen.standard_normal((30, 4)) * np.array([1.0, 2.0, 0.5, 3.0]) + np.array([0.0, 1.0, -2.0, 0.5])
    p = gen.integers(0, 2, 30)
    w = np.where(p == 1, gen.integers(2, 4, 30), gen.integers(1, 3, 30))  # in {1, 2, 3}, heavier on class 1
    assert set(np.unique(w)) == {1, 2, 3} and set(np.unique(p)) == {0, 1}
    want = _moment_gap_numpy(np.repeat(z, w, axis=0), np.repeat(p, w))
    got = moment_gap(torch.as_tensor(z), torch.as_tensor(p), torch.as_tensor(w))
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(want, rel=1e-10)
    # the weights matter here: the unweighted gap of the original rows is not the answer
    assert abs(_moment_gap_numpy(z, p) - want) > 1e-3 * want


@pytest.mark.parametrize(("loss", "alpha"), [("moments", 0.75), ("moments+reversal", 0.3), ("moments+reversal", 0.75)])
def test_moments_extractor_gradient(loss, alpha):
    """With target_weight='one', adversary_weight='odds': under extractor_loss='moments' the extractor's gradient is
    that of CE_y + w_a * n * moment_gap(G_f(x_protected), p) (w_a = alpha / (1 - alpha)), the protected likelihood
    training the adversary on detached features only; 'moments+reversal' (the entry's default) adds the paper's
    reversed adversary gradient at eq. 1's weight, - alpha * sum_j w_j CE_p^j. Computed by hand in plain torch."""
    from pyrozoo.models.agnostic import moment_gap

    data = _small_task()
    kw, net, heads = data.model_kwargs(), data.inputs["net"], _heads(data)
    got, ce_y = _model_grad_and_target_ce(data, heads, "moments", alpha=alpha, extractor_loss=loss,
                                          target_weight="one", adversary_weight="odds")
    z_c = net.extractor(kw["x"][kw["protected_idx"]])
    want = ce_y + alpha / (1 - alpha) * kw["target_idx"].numel() * moment_gap(z_c, kw["p"], kw["protected_weight"])
    if loss == "moments+reversal":
        ce_p = F.cross_entropy(net.adversary(z_c) @ heads["w_p"].T + heads["b_p"], kw["p"], reduction="none")
        want = want - alpha * (kw["protected_weight"] * ce_p).sum()
    assert torch.allclose(got, _extractor_grad(want, net), atol=1e-10)


def test_context_copies_render_each_context_digit_in_both_colours():
    one, two = digits_task(0), digits_task(0, context_copies=2)
    n_ctx = one.inputs["protected_idx"].numel()
    assert two.inputs["protected_idx"].numel() == 2 * n_ctx
    assert torch.equal(one.inputs["target_idx"], two.inputs["target_idx"])
    x = two.inputs["x"][two.inputs["protected_idx"]]
    colour = ((x[:, 1] - x[:, 0]).mean((-1, -2)) > 0).long()
    p = two.observed["p"]
    assert torch.equal(colour, p) and torch.equal(p[:n_ctx], 1 - p[n_ctx:])
    ink = x.min(1).values  # both channels carry the ink: the same digit in both halves, up to pixel noise
    assert float((ink[:n_ctx] - ink[n_ctx:]).abs().mean()) < 0.2


@pytest.mark.parametrize("option", [{"adversary_weight": "huge"}, {"max_adversary_weight": 0.0},
                                    {"extractor_loss": "mmd"}, {"context_copies": 0}])
def test_bad_weighting_options(option):
    with pytest.raises(PyrozooError, match=next(iter(option))):
        load_digits_task(0, **option)


@pytest.mark.slow
def test_default_scheme_meets_both_targets_on_digits_seed0():
    """Seeded (seed 0), the default scheme at alpha = 1 (moment matching at weight 100 plus the reversal layer,
    target weight 1): the fresh probes read the colour within 5 points of chance, and the decorrelated target
    accuracy beats the alpha = 0 plain classifier's by more than 10 points. Two 400-step fits."""
    out = {alpha: _fit_digits(alpha)[0] for alpha in (0.0, 1.0)}
    hi = out[1.0]
    assert max(hi["probe_logreg_acc"], hi["probe_mlp_acc"]) - hi["probe_chance"] < 0.05
    assert hi["test_decorrelated_target_acc"] > out[0.0]["test_decorrelated_target_acc"] + 0.1
    assert out[0.0]["probe_logreg_acc"] > 0.85  # the plain classifier encodes the colour


# ------------------------------------------------------- QA pass: batch size, n_context, divergence, no-op options
def _table_data(rows: int = 60, seed: int = 0):
    """A custom table task with ``rows`` rows, every one target- and protected-labelled (fewer than the default
    batch_size 128)."""
    from pyrozoo.models.agnostic import attach_network

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 4))
    return attach_network(make_agnostic_data(x, rng.integers(0, 2, rows), rng.integers(0, 2, rows)))


def _tiny_fit(data, steps: int = 3, lr: float | None = None, **options):
    from pyrozoo.models.agnostic import fit_agnostic

    cfg = RunConfig(model="agnostic", device="cpu", progress=False, steps=steps, num_samples=2, seed=0, lr=lr,
                    options=options)
    return fit_agnostic(data, cfg)


def test_plate_batch_is_clamped_to_the_plate():
    from pyrozoo.validation import plate_subsample

    assert plate_subsample("batch_size", None, 60) is None and plate_subsample("batch_size", 0, 60) is None
    assert plate_subsample("batch_size", 128, 60) is None and plate_subsample("batch_size", 60, 60) is None
    assert plate_subsample("batch_size", 16, 60) == 16


def test_default_batch_size_works_on_a_dataset_smaller_than_it():
    """A custom dataset of 60 rows at the default batch_size (128) crashed in Pyro ("subsample_size does not match
    len(subsample), 128 vs 60"); each plate now takes min(batch_size, its rows), i.e. the whole plate here, so the
    fit is the full-batch fit (batch_size=0), draw for draw."""
    whole = _tiny_fit(_table_data())
    assert np.all(np.isfinite(whole.fit_stats["loss"]))
    full = _tiny_fit(_table_data(), batch_size=0)
    assert np.array_equal(whole.fit_stats["loss"], full.fit_stats["loss"])
    assert np.array_equal(np.asarray(whole.posterior["w_y"]), np.asarray(full.posterior["w_y"]))


def test_model_plates_use_the_clamped_size_and_the_guide_has_none():
    """Each plate of the model subsamples min(batch_size, rows), and a smaller batch still subsamples. The guide
    (AutoNormal over the global heads) has no plates, so model and guide cannot disagree on a subsample size; one
    ELBO evaluation runs at a batch size above both plates."""
    from pyro.infer import TraceMeanField_ELBO

    from pyrozoo.models.agnostic import make_agnostic_guide

    data = _small_task()  # 12 target rows, 11 protected rows
    for batch, want in ((100, (12, 11)), (4, (4, 4))):
        pyro.clear_param_store()
        kw = {**data.model_kwargs(), "batch_size": batch}
        tr = poutine.trace(agnostic_model).get_trace(**kw)
        assert (tr.nodes["target_id"]["value"].numel(), tr.nodes["protected_id"]["value"].numel()) == want
        guide = make_agnostic_guide(agnostic_model)
        guide_tr = poutine.trace(guide).get_trace(**kw)
        assert not guide._prototype_frames and "target_id" not in guide_tr.nodes
        assert torch.isfinite(TraceMeanField_ELBO().differentiable_loss(agnostic_model, guide, **kw))


def test_batch_size_above_the_rows_of_cps1985_runs():
    """`pyrozoo run agnostic --dataset cps1985 -o batch_size=400` (320 training rows) crashed in Pyro."""
    from pyrozoo.runner import run_model

    cfg = RunConfig(model="agnostic", dataset="cps1985", device="cpu", progress=False, steps=2, num_samples=2,
                    options={"batch_size": 400})
    out = run_model(cfg, save=False)
    assert np.all(np.isfinite(out.result.fit_stats["loss"]))


def test_n_context_is_not_an_entry_option():
    """n_context counts the background-only context images of digits_task(context='blank'), a Python argument; the
    entry's context part is the digit pool, so the option was accepted and ignored. It is now unknown to the entry,
    and digits_task refuses it unless context='blank'."""
    entry = agnostic_entry()
    assert "n_context" not in entry.options
    with pytest.raises(PyrozooError, match=r"unknown key\(s\) n_context"):
        entry.check_config(RunConfig(model="agnostic", steps=5, options={"n_context": 50}))
    with pytest.raises(PyrozooError, match=r"unknown key\(s\) n_context"):
        load_digits_task(0, n_context=50)
    with pytest.raises(PyrozooError, match=r"n_context: applies only to context='blank'.*no effect"):
        digits_task(0, n_context=50)
    blank = digits_task(0, context="blank", n_context=50)
    assert blank.inputs["protected_idx"].numel() == 50  # protected_on_target=False: the context part only
    assert digits_task(0, context="blank").inputs["protected_idx"].numel() == 400  # the default


def _poisoned_run(poison, **run_options):
    """run_agnostic_svi on the small task; ``poison(net, store)`` is called after step 0 (the callback), the way a
    diverging step would leave the parameters."""
    from pyrozoo.models.agnostic import make_agnostic_guide, run_agnostic_svi

    data = _small_task()
    schedule = AlphaSchedule(0.5, "constant")
    kw = {**data.model_kwargs(), "alpha": schedule, "batch_size": 4}
    net, store = kw["net"], pyro.get_param_store()

    def callback(step):
        if step == 0:
            with torch.no_grad():
                poison(net, store)

    opts = {"lr": 0.01, "adv_steps": 2, "num_samples": 2, "progress": False, "seed": 0, **run_options}
    return run_agnostic_svi(agnostic_model, make_agnostic_guide(agnostic_model), kw, schedule=schedule,
                            num_steps=3, callback=callback, **opts)


def _set_scale(site):
    def poison(net, store):
        store.get_param(f"AutoNormal.scales.{site}").unconstrained().fill_(-1e6)  # softplus underflows to 0
    return poison


@pytest.mark.parametrize(("poison", "options", "match"), [
    (lambda net, store: net.extractor.body[0].weight.fill_(float("nan")), {"clip_norm": 1.0},
     r"svi: the features G_f\(x\) became non-finite at step 1 \(the extractor diverged\); lower lr$"),
    (lambda net, store: net.adversary[0].weight.fill_(float("inf")), {},
     r"svi: the adversary's loss became nan at step 1; lower adv_lr"),
    (_set_scale("w_p"), {}, r"svi: training diverged at step 1 \(the adversary's steps\): the scale of a Normal "
                            r"became invalid \(constraint GreaterThan\(lower_bound=0\.0\)\); lower adv_lr"),
    (_set_scale("w_y"), {"adv_steps": 0, "clip_norm": 0.0},
     r"svi: training diverged at step 1 \(the extractor and target step\): the scale of a Normal became invalid "
     r".*; lower lr or set clip_norm > 0"),
])
def test_a_diverged_parameter_is_a_clear_error(poison, options, match):
    """A diverging run ended in a raw torch ValueError from adversary_loss (Normal(loc=nan)); every way a step can
    break the parameters is now the svi error naming the rate to lower, as for a non-finite loss."""
    with pytest.raises(PyrozooError, match=match):
        _poisoned_run(poison, **options)


def test_divergence_after_the_last_step_is_a_clear_error():
    """A step that breaks the parameters at the end of the run fails when the posterior is drawn."""
    from pyrozoo.models.agnostic import make_agnostic_guide, run_agnostic_svi

    def poison(net, store):
        with torch.no_grad():
            net.extractor.body[0].weight.fill_(float("nan"))

    data = _small_task()
    schedule = AlphaSchedule(0.5, "constant")
    kw = {**data.model_kwargs(), "alpha": schedule}
    with pytest.raises(PyrozooError, match=r"svi: training diverged at its last step \(0\): the logits of a "
                                           r"Categorical became invalid"):
        run_agnostic_svi(agnostic_model, make_agnostic_guide(agnostic_model), kw, schedule=schedule, num_steps=1,
                         lr=0.01, num_samples=2, progress=False, callback=lambda step: poison(kw["net"], None))


def test_other_value_errors_are_not_reworded():
    from pyrozoo.inference.svi import diverged_error

    assert diverged_error(ValueError("something else"), "at step 3", "lower lr") is None


def test_the_qa_repro_of_a_diverging_run_is_a_clear_error():
    """`pyrozoo run agnostic --steps 30 --lr 1e8 -o clip_norm=0` (here on a 60-row table, and on digits)."""
    from pyrozoo.runner import run_model

    with pytest.raises(PyrozooError, match=r"^svi: .*(diverged|non-finite).*lower lr or set clip_norm > 0"):
        _tiny_fit(_table_data(), steps=30, lr=1e8, clip_norm=0.0)
    with pytest.raises(PyrozooError, match=r"^svi: .*(diverged|non-finite).*lower lr or set clip_norm > 0"):
        run_model(RunConfig(model="agnostic", device="cpu", progress=False, steps=30, lr=1e8,
                            options={"clip_norm": 0.0}), save=False)


@pytest.mark.parametrize(("options", "steps", "match"), [
    ({"adversary_warmup": 5, "schedule": "constant"}, 5,
     r"adversary_warmup: expected fewer than 5 warm-up iterations with steps=5, got 5; alpha_t is 0 during the "
     r"warm-up, so alpha would be 0 at every step and the fit a plain classifier"),
    ({"adversary_warmup": 9}, 5, r"adversary_warmup: expected fewer than 4 .* got 9"),
    # linear (and DANN) schedules restart at alpha_t = 0 after the warm-up: one step short is still a no-op
    ({"adversary_warmup": 4}, 5, r"adversary_warmup: expected fewer than 4 warm-up iterations with steps=5, got 4; "
                                 r"alpha_t is 0 during the warm-up and, under the 'linear' schedule, at the first"),
    ({"adversary_warmup": 4, "schedule": "dann"}, 5, r"adversary_warmup: .*under the 'dann' schedule"),
    ({"lr_decay": 2.0}, 5, r"lr_decay: expected a number in \(0, 1\] \(the rate decays geometrically"),
    ({"lr_decay": 0.0}, 5, r"lr_decay: expected a number in \(0, 1\]"),
    ({"optimizer": "adam", "momentum": 0.9}, 5,
     r"momentum: applies only to optimizer='sgd'; with optimizer='adam' it would have no effect"),
    ({"optimizer": "adam", "momentum": 0.5}, 5, r"momentum: applies only"),  # given, even at its default
    ({"adv_steps": 0, "adv_lr": 0.1}, 5,
     r"adv_lr: applies only to the two-timescale adversary \(adv_steps > 0\); with adv_steps=0 it would have no"),
    ({"adv_steps": 0, "adv_reset": 10, "adv_retrain": 5, "adv_weight_decay": 0.1}, 5,
     r"adv_reset, adv_retrain, adv_weight_decay: apply only to .* they would have no effect \(remove them\)"),
    ({"schedule": "dann", "ramp": 0.3}, 5, r"ramp: applies only to schedule='linear' .* with schedule='dann'"),
    ({"schedule": "constant", "ramp": 0.5}, 5, r"ramp: applies only"),  # given, even at its default
    ({"adversary_weight": "alpha", "max_adversary_weight": 5.0}, 5,
     r"max_adversary_weight: caps only adversary_weight='odds'; with adversary_weight='alpha' it would have no"),
])
def test_options_the_run_would_ignore_are_refused_before_any_work(options, steps, match):
    """check_config (so the CLI and a sweep's cells, before any data are loaded, and a direct fit_agnostic) refuses
    them."""
    entry = agnostic_entry()
    cfg = RunConfig(model="agnostic", device="cpu", progress=False, steps=steps, num_samples=2, options=options)
    with pytest.raises(PyrozooError, match=match):
        entry.check_config(cfg)
    if "lr_decay" not in options:  # a direct fit refuses them too (lr_decay is refused by the loader already)
        with pytest.raises(PyrozooError, match=match):
            _tiny_fit(_table_data(), steps=steps, **options)


def test_the_combinations_next_to_the_refused_ones_still_run():
    """optimizer=adam (momentum left at its default), adv_steps=0 alone, the longest warm-ups after which alpha_t
    leaves 0 (two steps short of the run under the default linear ramp, one step under a constant schedule) and
    lr_decay = 1 (a constant rate) are valid; the data loaders, which see the defaults merged in, refuse nothing
    for being at its default."""
    from pyrozoo.models.agnostic import DIGITS_OPTIONS, MODEL_OPTIONS, check_model_options

    entry = agnostic_entry()
    for options in ({"optimizer": "adam"}, {"adv_steps": 0}, {"adversary_warmup": 3},
                    {"adversary_warmup": 4, "schedule": "constant"}, {"adversary_warmup": 4, "ramp": 0.0},
                    {"lr_decay": 1.0}, {"optimizer": "sgd", "momentum": 0.9}, {"adv_steps": 3, "adv_lr": 0.1},
                    {"schedule": "linear", "ramp": 0.3}, {"schedule": "dann"}, {"adversary_weight": "alpha"},
                    {"max_adversary_weight": 5.0}):
        entry.check_config(RunConfig(model="agnostic", steps=5, options=options))
    check_model_options({**MODEL_OPTIONS, **DIGITS_OPTIONS, "optimizer": "adam", "adv_steps": 0})
    result = _tiny_fit(_table_data(), steps=4, adversary_warmup=2, optimizer="adam", lr_decay=1.0)
    assert np.allclose(result.fit_stats["alpha"], [0.0, 0.0, 0.0, 1.0])  # linear ramp 0.5 over 2 steps
    result = _tiny_fit(_table_data(), steps=3, adversary_warmup=2, schedule="constant")
    assert np.allclose(result.fit_stats["alpha"], [0.0, 0.0, 1.0])


def test_run_agnostic_svi_refuses_a_growing_rate():
    from pyrozoo.models.agnostic import make_agnostic_guide, run_agnostic_svi

    data = _small_task()
    schedule = AlphaSchedule(0.5, "constant")
    kw = {**data.model_kwargs(), "alpha": schedule}
    with pytest.raises(PyrozooError, match=r"lr_decay: expected a number in \(0, 1\]"):
        run_agnostic_svi(agnostic_model, make_agnostic_guide(agnostic_model), kw, schedule=schedule, num_steps=1,
                         lr_decay=1.5, progress=False)


# ----------------------------------------------- QA pass: a user's own data (results, labels, options, device)
def _user_arrays(seed: int = 0, n: int = 120):
    """A table task: target y (column a), protected p (column b), and probe / test splits of 60 and 80 rows."""
    rng = np.random.default_rng(seed)

    def part(rows):
        y, p = rng.integers(0, 2, rows), rng.integers(0, 2, rows)
        x = np.c_[y + 0.5 * rng.standard_normal(rows), p + 0.3 * rng.standard_normal(rows),
                  rng.standard_normal((rows, 2))]
        return x, y, p

    return part(n), part(60), part(80)


def _user_data(train, probe, test, *, code=lambda v: v, pcode=lambda v: v, **network):
    from pyrozoo.models.agnostic import attach_network

    (x, y, p), (xp, _, pp), (xt, yt, pt) = train, probe, test
    data = make_agnostic_data(x, code(y), pcode(p), leakage_split="test",
                              splits={"probe": {"x": xp, "p": pcode(pp)},
                                      "test": {"x": xt, "y": code(yt), "p": pcode(pt)}})
    return attach_network(data, **{"feature_dim": 6, "hidden": 8, **network})


def _user_fit(data, steps: int = 20, **options):
    from pyrozoo.models.agnostic import fit_agnostic

    cfg = RunConfig(model="agnostic", device="cpu", progress=False, steps=steps, num_samples=4, seed=0,
                    options=options)
    return fit_agnostic(data, cfg)


def test_each_result_scores_with_its_own_network():
    """fit_agnostic retrained data.inputs['net'] in place and agnostic_metrics / predict_proba read it, so after an
    alpha = 1 fit the alpha = 0 Result reported the alpha = 1 network's leakage. Now an alpha grid over one dataset
    gives the numbers of a fresh dataset per alpha, and the dataset's network stays untrained."""
    from pyrozoo.models.agnostic import agnostic_metrics, predict_proba

    arrays = _user_arrays()
    data = _user_data(*arrays)
    before = {k: v.clone() for k, v in data.inputs["net"].state_dict().items()}
    grid = {alpha: _user_fit(data, alpha=alpha) for alpha in (0.0, 1.0)}
    assert all(torch.equal(v, before[k]) for k, v in data.inputs["net"].state_dict().items())
    x_test = arrays[2][0]
    for alpha, result in grid.items():
        fresh = _user_data(*arrays)
        alone = _user_fit(fresh, alpha=alpha)
        assert agnostic_metrics(result, data) == agnostic_metrics(alone, fresh)
        for which in ("y", "p"):
            assert torch.equal(predict_proba(result, x_test, which=which, data=data),
                               predict_proba(alone, x_test, which=which, data=fresh))
    assert agnostic_metrics(grid[0.0], data) != agnostic_metrics(grid[1.0], data)


def test_missing_held_out_labels_count_only_in_the_metrics_that_need_them():
    """NaN labels in held-out splits became -1 and were scored as errors (target accuracy) or as a class -1
    (fairness, probes, chance). Each metric now equals the one computed on only the rows with the labels it needs."""
    from pyrozoo.models.agnostic import agnostic_metrics, attach_network

    train, (xp, _, pp), (xt, yt, pt) = _user_arrays()
    yt_nan, pt_nan, pp_nan = yt.astype(float), pt.astype(float), pp.astype(float)
    yt_nan[:20], pt_nan[20:40], pp_nan[:10] = np.nan, np.nan, np.nan
    data = attach_network(make_agnostic_data(*train, leakage_split="test", splits={
        "probe": {"x": xp, "p": pp_nan}, "test": {"x": xt, "y": yt_nan, "p": pt_nan}}), feature_dim=6, hidden=8)
    result = _user_fit(data, alpha=0.0)
    got = agnostic_metrics(result, data)
    with_y, with_p, both = np.r_[20:80], np.r_[0:20, 40:80], np.r_[40:80]
    parts = make_agnostic_data(*train, leakage_split="b", splits={
        "probe": {"x": xp[10:], "p": pp[10:]}, "a": {"x": xt[with_y], "y": yt[with_y]},
        "b": {"x": xt[with_p], "p": pt[with_p]}, "c": {"x": xt[both], "y": yt[both], "p": pt[both]}})
    parts.inputs["net"] = data.inputs["net"]
    want = agnostic_metrics(result, parts)
    assert got["test_target_acc"] == want["a_target_acc"]
    assert got["test_adversary_acc"] == want["b_adversary_acc"]
    assert got["test_dp_diff"] == want["b_dp_diff"] and got["test_eo_diff"] == want["c_eo_diff"]
    for key in ("logreg_acc", "mlp_acc", "chance", "max_excess"):
        assert got[f"probe_{key}"] == want[f"probe_{key}"]


@pytest.mark.parametrize(("code", "pcode"), [(lambda v: v + 1, lambda v: 5 * v),
                                             (lambda v: np.where(v == 1, "yes", "no"),
                                              lambda v: np.where(v == 1, "m", "f"))])
def test_labels_in_another_coding_give_the_same_fit_and_scores(code, pcode):
    """y in {1, 2} and p in {0, 5} made phantom classes (predict_proba had 3 columns, the adversary 6) and
    eo_diff dropped the true-positive gap; text labels were refused. Recoded, the fit is the 0/1 fit."""
    from pyrozoo.models.agnostic import agnostic_metrics, predict_proba

    arrays = _user_arrays()
    plain, coded = _user_data(*arrays), _user_data(*arrays, code=code, pcode=pcode)
    r_plain, r_coded = _user_fit(plain, alpha=0.5), _user_fit(coded, alpha=0.5)
    assert agnostic_metrics(r_coded, coded) == agnostic_metrics(r_plain, plain)
    x_test = arrays[2][0]
    prob = predict_proba(r_coded, x_test, data=coded)
    assert prob.shape == (80, 2) and torch.equal(prob, predict_proba(r_plain, x_test, data=plain))
    assert predict_proba(r_coded, x_test, which="p", data=coded).shape == (80, 2)
    # 'no' < 'yes': sorted, so code 1 (column 1) is the original 1 in both codings
    assert coded.meta["y_classes"][1] == code(np.array([1]))[0]


def test_network_and_digits_options_that_would_be_ignored_are_refused():
    """feature_dim, hidden, adv_layers, adv_standardize given to fit_agnostic with a dataset whose network was
    already built (and the digits options with a user's data) were accepted and ignored."""
    data = _user_data(*_user_arrays())  # feature_dim 6, hidden 8, adv_layers 1, adv_standardize True
    for option, value in (("feature_dim", 4), ("hidden", 16), ("adv_layers", 2), ("adv_standardize", False)):
        with pytest.raises(PyrozooError, match=rf"{option}: the dataset's network was built with {option}=.*, got "
                                               rf"{value}; .* attach_network\(data, {option}={value}\)"):
            _user_fit(data, steps=1, **{option: value})
    assert _user_fit(data, steps=1, feature_dim=6, hidden=8, adv_layers=1).fit_stats["loss"].size == 1
    with pytest.raises(PyrozooError, match=r"train_corr, context_copies: apply only to the digits task .* with dataset "
                                           r"'agnostic-custom' they would have no effect"):
        _user_fit(data, steps=1, train_corr=0.9, context_copies=2)
    digits = load_digits_task(0, train_corr=0.9)  # called directly: digits_task's context_copies default, 1
    with pytest.raises(PyrozooError, match=r"train_corr: the digits dataset was rendered with train_corr=0\.9, got "
                                           r"0\.8"):
        _user_fit(digits, steps=1, train_corr=0.8)
    with pytest.raises(PyrozooError, match=r"context_copies: the digits dataset was rendered with context_copies=1"):
        _user_fit(digits, steps=1, context_copies=2)
    assert _user_fit(digits, steps=1, train_corr=0.9, context_copies=1).fit_stats["loss"].size == 1


def test_run_config_device_is_resolved_and_used(monkeypatch):
    """RunConfig.device was never read: device='cuda' on a CPU-only machine ran on the CPU silently."""
    import pyrozoo.models.agnostic as agn

    asked, placed, original = [], [], agn.run_agnostic_svi

    def resolve(device):
        asked.append(device)
        return torch.device("cpu")

    def spy(model, guide, model_kwargs, **kw):
        placed.append((model_kwargs["x"].device, next(model_kwargs["net"].parameters()).device))
        return original(model, guide, model_kwargs, **kw)

    monkeypatch.setattr(agn, "resolve_device", resolve)
    monkeypatch.setattr(agn, "run_agnostic_svi", spy)
    data = _user_data(*_user_arrays())
    agn.fit_agnostic(data, RunConfig(model="agnostic", progress=False, steps=1, num_samples=2))
    assert asked == ["auto"] and placed == [(torch.device("cpu"), torch.device("cpu"))]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused_before_any_work():
    from pyrozoo.models.agnostic import fit_agnostic

    data = _user_data(*_user_arrays())
    with pytest.raises(PyrozooError, match="device: 'cuda' was asked for but CUDA is not available"):
        fit_agnostic(data, RunConfig(model="agnostic", device="cuda", progress=False, steps=1, num_samples=2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_cuda_fits_on_the_gpu_and_scores():
    from pyrozoo.models.agnostic import agnostic_metrics, fit_agnostic

    data = _user_data(*_user_arrays())
    result = fit_agnostic(data, RunConfig(model="agnostic", device="cuda", progress=False, steps=3, num_samples=2))
    assert result.predictive_fn.model_kwargs["x"].device.type == "cuda"
    assert np.isfinite(agnostic_metrics(result, data)["test_target_acc"])


def test_predict_proba_input_checks():
    """Wrong column count, a 1-D row and an unknown `which` gave torch errors or KeyError, NaN rows NaN output;
    the dataset's untrained network (what the QA reproducer passed) would now score silently with random weights."""
    from pyrozoo.models.agnostic import fitted_network, predict_proba

    arrays = _user_arrays()
    data = _user_data(*arrays)
    result = _user_fit(data, steps=2)
    x = arrays[2][0]
    nan_rows = x.copy()
    nan_rows[3, 1] = np.nan
    cases = [((result, x[:, :3]), {"data": data}, r"x: expected rows shaped \(N, 4\) like the training inputs, got "
                                                  r"shape \(80, 3\)"),
             ((result, x[0]), {"data": data}, r"x: expected rows shaped \(N, 4\), got one row of shape \(4,\); "
                                              r"pass x\[None\]"),
             ((result, nan_rows), {"data": data}, r"x: expected finite values, found 1 non-finite \(NaN at index "
                                                  r"\(3, 1\)\)"),
             ((result, x), {"data": data, "which": "z"}, "which: expected one of y, p; got 'z'"),
             ((result, x), {}, r"data: expected the Dataset the result was fitted on .* got none"),
             ((result, x, result.posterior), {"data": data}, "posterior: with a Result the head draws are its own"),
             ((data.inputs["net"], x, result.posterior), {}, "net: this is the dataset's untrained network"),
             ((fitted_network(result, data), x, result.posterior), {"data": data}, "data: applies only with a Result"),
             ((fitted_network(result, data), x, {"w_y": 0}), {}, "posterior: expected draws of the heads")]
    for args, kwargs, match in cases:
        with pytest.raises(PyrozooError, match=match):
            predict_proba(*args, **kwargs)
    assert predict_proba(result, x[:1], data=data).shape == (1, 2)
    assert torch.equal(predict_proba(fitted_network(result, data), x, result.posterior),
                       predict_proba(result, x, data=data))
    other = _user_data(*arrays, feature_dim=5)
    with pytest.raises(PyrozooError, match="result: its fitted network does not match the dataset's network"):
        predict_proba(result, x, data=other)


def test_the_docs_python_example_runs():
    """docs/agnostic.md's "Your own data" block, as written but with 5 steps instead of 300."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "agnostic.md").read_text()
    section = text.split("## Your own data (Python)")[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "steps=300" in code
    namespace: dict = {}
    exec(compile(code.replace("steps=300", "steps=5"), "docs/agnostic.md", "exec"), namespace)
    assert namespace["proba"].shape == (3, 2) and namespace["data"].meta["y_classes"] == ["high", "low"]


def test_feature_dim_one_is_refused():
    """A LayerNorm without affine parameters over one feature is always 0: feature_dim=1 would train a network whose
    features carry nothing (chance accuracy reading as perfectly fair), so the option check and the extractors
    refuse it before any work."""
    from pyrozoo.models.agnostic import ConvFeatures, MLPFeatures, check_model_options

    assert torch.equal(torch.nn.LayerNorm(1, elementwise_affine=False)(torch.randn(4, 1)), torch.zeros(4, 1))
    message = r"feature_dim: expected an integer >= 2 \(.*LayerNorm over a single feature is always 0\), got 1"
    with pytest.raises(PyrozooError, match=message):
        check_model_options({"feature_dim": 1})
    with pytest.raises(PyrozooError, match=message):
        MLPFeatures(3, 1)
    with pytest.raises(PyrozooError, match=message):
        ConvFeatures(1, 8, 1)
    with pytest.raises(PyrozooError, match=message):
        AgnosticNetwork.for_inputs(torch.zeros(4, 3), feature_dim=1)
    with pytest.raises(PyrozooError, match="feature_dim: expected an integer >= 2"):
        check_model_options({"feature_dim": 0})
    assert check_model_options({"feature_dim": 2})["feature_dim"] == 2
    assert MLPFeatures(3, 2)(torch.randn(5, 3)).abs().sum() > 0


def _frame_fit():
    """A tiny fit on a DataFrame with columns a..d (every row labelled both ways), 3 steps."""
    import pandas as pd

    from pyrozoo.models.agnostic import attach_network

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((40, 4)), columns=list("abcd"))
    data = attach_network(make_agnostic_data(frame, rng.integers(0, 2, 40), rng.integers(0, 2, 40)),
                          feature_dim=4, hidden=6)
    return frame, data, _tiny_fit(data)


def test_predict_proba_of_zero_rows_is_empty():
    """Zero rows raised torch.cat's bare 'expected a non-empty list of Tensors' from head_logits; they now give an
    empty (0, classes) result, as the BNN's predictions give empty tensors, for either head and either call form."""
    from pyrozoo.models.agnostic import fitted_network, predict_proba

    frame, data, result = _frame_fit()
    for x in (frame[:0], frame.to_numpy()[:0], torch.zeros(0, 4)):
        for which in ("y", "p"):
            proba = predict_proba(result, x, data=data, which=which)
            assert proba.shape == (0, 2) and proba.dtype == torch.float32
    assert predict_proba(fitted_network(result, data), frame[:0], result.posterior).shape == (0, 2)


def test_predict_proba_refuses_a_dataframe_with_other_columns():
    """DataFrame columns were read by position: the training columns in another order, or renamed, gave other
    probabilities without a word. A DataFrame must now have the training DataFrame's columns in order (both call
    forms); arrays and tensors stay positional."""
    from pyrozoo.models.agnostic import fitted_network, predict_proba

    frame, data, result = _frame_fit()
    same = predict_proba(result, frame[:3], data=data)
    assert torch.equal(same, predict_proba(result, frame.to_numpy()[:3], data=data))  # arrays: by position
    cases = [(frame[["d", "c", "b", "a"]], r"the same names in another order"),
             (frame.set_axis(list("wxyz"), axis=1), r"missing \['a', 'b', 'c', 'd'\], unexpected \['w', 'x', 'y', "
                                                    r"'z'\]")]
    net = fitted_network(result, data)
    for bad, detail in cases:
        message = (rf"x: expected the columns seen in fit, in that order, \['a', 'b', 'c', 'd'\]; got \[.*\] "
                   rf"\({detail}\)")
        with pytest.raises(PyrozooError, match=message):
            predict_proba(result, bad[:3], data=data)
        with pytest.raises(PyrozooError, match=message):
            predict_proba(net, bad[:3], result.posterior)
    assert net.feature_names == ["a", "b", "c", "d"] == data.meta["feature_names"]


def _rows_match_raw_frame(result, data, frame):
    """predict_proba of the raw DataFrame rows (both call forms) against that of the dataset's standardized tensor
    rows for the same rows (meta["split_rows"]): training rows and the test split's."""
    from pyrozoo.models.agnostic import fitted_network, predict_proba

    rows = data.meta["split_rows"]
    net = fitted_network(result, data)
    for raw, std in ((frame.iloc[rows["train"][:5]], data.inputs["x"][:5]),
                     (frame.iloc[rows["test"][:5]], data.meta["splits"]["test"]["x"][:5])):
        assert list(raw.columns) == data.meta["feature_names"]
        expected = predict_proba(result, std, data=data)
        torch.testing.assert_close(predict_proba(result, raw, data=data), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(predict_proba(net, raw, result.posterior), expected, rtol=1e-5, atol=1e-6)
        # arrays are taken in the network's units: the raw values as an array are not standardized
        assert not torch.allclose(predict_proba(result, raw.to_numpy(), data=data), expected, atol=1e-4)


def test_predict_proba_standardizes_a_raw_dataframe_of_a_data_file(tmp_path):
    """The --data reader standardizes the features with the training rows' moments, but predict_proba fed a
    DataFrame of the file's raw rows (which passes the column check) to the network unstandardized: other
    probabilities without a word. A DataFrame is now standardized with meta["x_mean"] / meta["x_scale"]."""
    import pandas as pd

    from pyrozoo.models.agnostic import load_agnostic_file

    rng = np.random.default_rng(0)
    n = 60
    y, g = rng.integers(0, 2, n), rng.choice(["f", "m"], n)
    frame = pd.DataFrame({"a": 3 + y + 0.5 * rng.standard_normal(n),
                          "b": 5 + (g == "f") + 0.3 * rng.standard_normal(n), "y": y, "g": g})
    path = tmp_path / "ag.csv"
    frame.to_csv(path, index=False)
    data = load_agnostic_file(str(path), 0, target="y", protected="g", feature_dim=4, hidden=6)
    _rows_match_raw_frame(_tiny_fit(data, steps=5), data, frame[["a", "b"]])


def test_predict_proba_standardizes_a_raw_dataframe_of_cps1985():
    """cps1985 standardizes its numeric columns with the training moments and keeps the dummies; it now records
    x_mean / x_scale for every feature column (0 and 1 for the dummies), so its raw rows score as its tensors do."""
    import pandas as pd

    from pyrozoo.data.agnostic_tasks import CPS_CATEGORICAL, CPS_NUMERIC
    from pyrozoo.data.shipped import load_rdataset
    from pyrozoo.models.agnostic import load_cps1985_task

    data = load_cps1985_task(0, feature_dim=4, hidden=6)
    names = data.meta["feature_names"]
    assert np.shape(data.meta["x_mean"]) == np.shape(data.meta["x_scale"]) == (len(names),)
    k = len(CPS_NUMERIC)
    assert np.all(data.meta["x_mean"][k:] == 0) and np.all(data.meta["x_scale"][k:] == 1)
    df = load_rdataset("cps1985")
    frame = pd.concat([df[list(CPS_NUMERIC)].astype(float),
                       pd.get_dummies(df[list(CPS_CATEGORICAL)], drop_first=True).astype(float)], axis=1)
    _rows_match_raw_frame(_tiny_fit(data, steps=3), data, frame)


def test_predict_proba_of_a_make_agnostic_data_frame_is_unchanged():
    """A dataset made from the user's own DataFrame records no moments: its DataFrames are used as given (the
    user's units), exactly as arrays of the same values."""
    from pyrozoo.models.agnostic import fitted_network, predict_proba

    frame, data, result = _frame_fit()
    assert "x_mean" not in data.meta and fitted_network(result, data).input_mean is None
    assert torch.equal(predict_proba(result, frame[:5], data=data), predict_proba(result, frame.to_numpy()[:5],
                                                                                  data=data))
    assert torch.equal(predict_proba(result, frame[:5], data=data), predict_proba(result, data.inputs["x"][:5],
                                                                                  data=data))


def _without_protected_rows(data):
    """A shallow copy of ``data`` with no protected-labelled rows: the plain classifier's data set."""
    import copy

    plain = copy.copy(data)
    plain.inputs, plain.observed = dict(data.inputs), dict(data.observed)
    plain.inputs["protected_idx"] = data.inputs["protected_idx"][:0]
    plain.inputs["protected_weight"] = data.inputs["protected_weight"][:0]
    plain.observed["p"] = data.observed["p"][:0]
    return plain


@pytest.mark.parametrize("scheme", [{}, {"extractor_loss": "reversal", "target_weight": "one_minus_alpha",
                                         "adversary_weight": "alpha"}])
def test_alpha_zero_with_gradient_clipping_fits_a_plain_classifier(scheme):
    """QA t3.py: with adv_steps=0 the adversary shares the main optimizer; its gradients used to enter the norm
    that clip_norm (default 1) clips G_f and G_y by, so an alpha = 0 fit differed from the plain classifier (the
    fit without the protected rows) by 0.02 in probability. Each part is now clipped by its own norm."""
    from pyrozoo.models.agnostic import attach_network, predict_proba

    rng = np.random.default_rng(0)
    y, g = rng.integers(0, 2, 80), rng.integers(0, 2, 80)
    noise = rng.standard_normal((80, 3))
    x = np.c_[y + 0.5 * noise[:, 0], g + 0.3 * noise[:, 1], y + g + 0.5 * noise[:, 2]]
    data = attach_network(make_agnostic_data(x, y, g))  # informative columns: gradient norms above clip_norm 1
    opts = {"alpha": 0.0, "adv_steps": 0, "batch_size": 0, **scheme}
    plain = _without_protected_rows(data)
    agnostic_fit, plain_fit = _tiny_fit(data, steps=20, **opts), _tiny_fit(plain, steps=20, **opts)
    x = data.inputs["x"][:20]
    got, want = predict_proba(agnostic_fit, x, data=data), predict_proba(plain_fit, x, data=plain)
    assert torch.allclose(got, want, atol=1e-6), float((got - want).abs().max())
    for name, value in plain_fit.params.items():
        if "extractor" in name or name.endswith(("w_y", "b_y")):
            assert torch.allclose(torch.as_tensor(agnostic_fit.params[name]), torch.as_tensor(value), atol=1e-6), name


BATCH_OF_ONE = r"^batch_size: expected 0 \(full batch\) or an integer >= 2 with adv_standardize=True .* got 1"


def test_batch_size_one_with_a_standardizing_adversary_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """QA: `-o batch_size=1` (with adv_standardize=True, the default) crashed in the first step with torch's
    "Expected more than 1 value per channel when training" from the adversary's BatchNorm on a protected
    minibatch of one row. It is now refused before any work: by the CLI (nothing written), by fit_agnostic
    (checked against the dataset's network) and by run_agnostic_svi."""
    import pandas as pd

    from pyrozoo.cli import main
    from pyrozoo.models.agnostic import AlphaSchedule, run_agnostic_svi

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.standard_normal(40), "b": rng.standard_normal(40),
                          "inc": rng.integers(0, 2, 40), "sex": rng.choice(["f", "m"], 40)})
    frame.to_csv(tmp_path / "people.csv", index=False)
    monkeypatch.chdir(tmp_path)
    rc = main(["run", "agnostic", "--data", "people.csv", "-o", "target=inc", "-o", "protected=sex", "-o",
               "features=a,b", "--steps", "3", "-o", "batch_size=1", "--out", "runs/b1"])
    assert rc == 2 and capsys.readouterr().err.startswith("pyrozoo: error: batch_size: expected 0 (full batch)")
    assert not (tmp_path / "runs").exists()
    data = _table_data()
    with pytest.raises(PyrozooError, match=BATCH_OF_ONE):
        _tiny_fit(data, batch_size=1)
    kwargs = {**data.model_kwargs(), "batch_size": 1}
    with pytest.raises(PyrozooError, match=BATCH_OF_ONE):
        run_agnostic_svi(agnostic_model, make_agnostic_guide(), kwargs, schedule=AlphaSchedule(0.5), num_steps=1,
                         progress=False)


def test_batch_size_one_runs_without_standardizing_and_two_runs_with_it():
    """The neighbours of the refused case: a network built with adv_standardize=False takes batch_size=1 (the
    option's merged default True does not refuse it), and batch_size=2 gives every BatchNorm batch two rows."""
    from pyrozoo.models.agnostic import attach_network

    plain = attach_network(_table_data(rows=30), adv_standardize=False)
    assert len(_tiny_fit(plain, batch_size=1).fit_stats["loss"]) == 3
    assert len(_tiny_fit(_table_data(rows=30), batch_size=2).fit_stats["loss"]) == 3


@pytest.mark.parametrize(("options", "match"), [
    ({"hidden": 0}, r"^hidden: expected an integer >= 1, got 0$"),
    ({"hidden": -3}, r"^hidden: expected an integer >= 1, got -3$"),
    ({"adv_layers": -1}, r"^adv_layers: expected an integer >= 0, got -1$"),
    ({"adv_layers": 2.5}, r"^adv_layers: expected an integer >= 0, got 2.5$"),
    ({"feature_dim": 1}, r"^feature_dim: expected an integer >= 2"),
    ({"adv_standardize": "yes"}, r"^adv_standardize: expected true or false, got 'yes'$"),
])
def test_attach_network_checks_the_network_options_as_the_entry_does(options, match):
    """QA t21.py: attach_network took hidden=0 / -3 and adv_layers=-1 / 2.5 and failed later with raw torch errors
    (in the fit, or while building); the entry's checks now run in attach_network, before anything is built."""
    from pyrozoo.models.agnostic import attach_network, check_model_options

    data = make_agnostic_data(*_user_arrays()[0])
    with pytest.raises(PyrozooError, match=match):
        attach_network(data, **options)
    assert "net" not in data.inputs
    with pytest.raises(PyrozooError, match=match):  # the same error as the CLI's
        check_model_options(options)


def test_attach_network_passes_the_converted_feature_dim_on():
    """feature_dim=4.0 (an integral float, accepted by the checks) used to reach BatchNorm1d as a float (a raw
    TypeError); the converted int is now what the network is built with."""
    from pyrozoo.models.agnostic import attach_network

    data = attach_network(_table_data(rows=30), feature_dim=4.0, hidden=np.int64(6), adv_layers=2.0)
    net = data.inputs["net"]
    assert (net.feature_dim, net.hidden, net.adversary_layers) == (4, 6, 2) and type(net.feature_dim) is int
    assert len(_tiny_fit(data, batch_size=0).fit_stats["loss"]) == 3


def test_accuracies_are_exact_ratios_of_counts():
    """QA: the accuracies in metrics.json were float32 means (269/539 read 0.4990723431110382); they are now the
    exact ratio of the counts, as float64 (0.49907235621521334), checked against predict_proba's argmax."""
    from fractions import Fraction

    from pyrozoo.models.agnostic import agnostic_metrics, predict_proba

    train, probe, (xt, yt, pt) = _user_arrays(n=107)
    test = (np.r_[xt, xt[:19]], np.r_[yt, yt[:19]], np.r_[pt, pt[:19]])  # 99 rows: k/99 (0 < k < 99) is no float32
    data = _user_data(train, probe, test)
    result = _user_fit(data, steps=5)
    metrics = agnostic_metrics(result, data)
    part = data.meta["splits"]["test"]
    for key, x, labels, which in (("train_target_acc", data.inputs["x"][data.inputs["target_idx"]],
                                   data.observed["y"], "y"),
                                  ("test_target_acc", part["x"], part["y"], "y"),
                                  ("test_adversary_acc", part["x"], part["p"], "p")):
        hits = int((predict_proba(result, x, which=which, data=data).argmax(-1) == labels).sum())
        assert metrics[key] == float(Fraction(hits, labels.shape[0])), key


def test_the_entry_check_refuses_batch_size_one_with_the_default_adv_standardize():
    """QA11: the entry's check_options (``pyrozoo run`` and every sweep cell, before any data) refused batch_size=1
    only with adv_standardize given, though the loaders build the network with its default True; a sweep then ran
    its other cells first. It now checks against the merged default; a direct fit still checks against the
    dataset's network (a plain one takes batch_size=1 without the option)."""
    from pyrozoo.models.agnostic import attach_network, check_model_options
    from pyrozoo.registry import get

    entry = get("agnostic")
    with pytest.raises(PyrozooError, match=BATCH_OF_ONE):
        entry.check_config(RunConfig(model="agnostic", steps=3, options={"batch_size": 1}))
    with pytest.raises(PyrozooError, match=BATCH_OF_ONE):
        check_model_options({"batch_size": 1})
    accepted = entry.check_config(RunConfig(model="agnostic", steps=3,
                                            options={"batch_size": 1, "adv_standardize": False}))
    assert accepted.options["batch_size"] == 1
    assert check_model_options({"batch_size": 1}, standardize=False)["batch_size"] == 1
    with pytest.raises(PyrozooError, match=BATCH_OF_ONE):  # the dataset's network standardizes, not the options
        check_model_options({"batch_size": 1, "adv_standardize": False}, standardize=True)
    plain = attach_network(_table_data(rows=30), adv_standardize=False)
    assert len(_tiny_fit(plain, batch_size=1).fit_stats["loss"]) == 3


def test_batch_size_one_with_adv_standardize_false_on_a_standardizing_network_names_the_mismatch():
    # QA12: the batch_size check ran first and advised "or adv_standardize=false", which the caller had given; the
    # real problem, the dataset's network built with adv_standardize=True, is now the error
    from pyrozoo.data.agnostic_tasks import make_agnostic_data
    from pyrozoo.errors import PyrozooError
    from pyrozoo.models.agnostic import attach_network, fit_agnostic

    g = torch.Generator().manual_seed(0)
    x, y, p = torch.randn(40, 3, generator=g), torch.randint(0, 2, (40,), generator=g), torch.arange(40) % 2
    data = attach_network(make_agnostic_data(x, y, p))
    with pytest.raises(PyrozooError, match=r"the dataset's network was built with adv_standardize=True, got False"):
        fit_agnostic(data, RunConfig(model="agnostic", steps=2, options={"batch_size": 1, "adv_standardize": False}))


def test_one_image_given_alone_is_told_to_add_the_batch_axis_not_to_flatten():
    # QA12: the hint "(or x.reshape(1, -1))" flattens an image; it is given for table rows only
    from pyrozoo.errors import PyrozooError
    from pyrozoo.models.agnostic import check_input_shape

    with pytest.raises(PyrozooError, match=r"got one row of shape \(1, 8, 8\); pass x\[None\] for a single row$"):
        check_input_shape("x", torch.zeros(1, 8, 8), (1, 8, 8))
    with pytest.raises(PyrozooError, match=r"pass x\[None\] \(or x\.reshape\(1, -1\)\) for a single row$"):
        check_input_shape("x", torch.zeros(3), (3,))


def test_non_square_images_fit_and_tiny_ones_are_refused_before_any_work():
    # QA12: the linear layer was sized for square images ((W // 4)^2), so 8 x 12 images crashed in the fit (mat1 and
    # mat2 shapes); images under 4 x 4 pixels crashed in the pools
    from pyrozoo.data.agnostic_tasks import make_agnostic_data
    from pyrozoo.errors import PyrozooError
    from pyrozoo.models.agnostic import attach_network, fit_agnostic, predict_proba

    g = torch.Generator().manual_seed(0)
    y, p = torch.randint(0, 2, (40,), generator=g), torch.arange(40) % 2
    data = attach_network(make_agnostic_data(torch.rand(40, 1, 8, 12, generator=g), y, p))
    result = fit_agnostic(data, RunConfig(model="agnostic", steps=2, progress=False))
    assert predict_proba(result, torch.rand(3, 1, 8, 12), data=data).shape == (3, 2)
    with pytest.raises(PyrozooError, match=r"^x: expected images of at least 4 x 4 pixels .*got 3 x 12$"):
        attach_network(make_agnostic_data(torch.rand(40, 1, 3, 12, generator=g), y, p))


def test_class_coordinates_carry_the_data_s_own_labels(tmp_path):
    """A file whose protected column held 'F'/'M' (and a target coded 1/2) gave protected_class [0 1] and class
    [0 1]: the labels lived only in data.meta. The coordinates now carry them, and an attribute maps the codes of the
    observed y and p to them, also in the saved idata.nc."""
    import arviz as az
    import pandas as pd

    from pyrozoo.runner import run_model

    gen = np.random.default_rng(0)
    n = 60
    g = np.where(gen.random(n) < 0.5, "F", "M")
    y = np.where(gen.random(n) < 0.5, 1, 2)
    pd.DataFrame({"a": gen.standard_normal(n), "b": gen.standard_normal(n), "g": g, "y": y}).to_csv(
        tmp_path / "ag.csv", index=False)
    cfg = RunConfig(model="agnostic", data=str(tmp_path / "ag.csv"), device="cpu", progress=False, steps=3,
                    num_samples=2, options={"target": "y", "protected": "g"})
    run_model(cfg, out=tmp_path / "run")
    idata = az.from_netcdf(tmp_path / "run" / "idata.nc")
    assert list(idata.posterior["b_p"]["protected_class"].values) == ["F", "M"]
    assert list(idata.posterior["b_y"]["class"].values) == [1, 2]
    assert set(np.unique(idata.observed_data["p"].values)) == {0, 1}  # codes: positions on those coordinates
    assert "0 = 'F', 1 = 'M'" in idata.attrs["class_codes"] and "0 = 1, 1 = 2" in idata.attrs["class_codes"]


def test_protected_index_lies_on_the_protected_rows_when_both_heads_have_as_many_rows(tmp_path):
    """A file with one row lacking the protected label and another lacking the target label has as many target
    rows as protected rows, but not the same ones. constant_data's protected_idx and protected_weight were put on
    target_id (their axis guessed from their length), so .sel(target_id=r) gave another row's index; they now lie
    on protected_id with the protected rows' labels: a row with both labels has the same x row in both indexes."""
    import arviz as az
    import pandas as pd

    from pyrozoo.runner import run_model

    gen = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame({"a": gen.standard_normal(n), "b": gen.standard_normal(n),
                          "g": np.where(gen.random(n) < 0.5, "F", "M"), "y": np.where(gen.random(n) < 0.5, 1, 2)})
    frame["g"] = frame["g"].astype(object)
    frame.loc[5, "g"] = None
    frame.loc[9, "y"] = None
    frame.to_csv(tmp_path / "ag.csv", index=False)
    cfg = RunConfig(model="agnostic", data=str(tmp_path / "ag.csv"), device="cpu", progress=False, steps=3,
                    num_samples=2, options={"target": "y", "protected": "g"})
    run_model(cfg, out=tmp_path / "run")
    idata = az.from_netcdf(tmp_path / "run" / "idata.nc")
    c = idata.constant_data
    assert c.sizes["target_id"] == c.sizes["protected_id"]  # the case: equally many rows, not the same rows
    assert c["target_idx"].dims == ("target_id",)
    assert c["protected_idx"].dims == ("protected_id",) and c["protected_weight"].dims == ("protected_id",)
    assert list(c["protected_id"].values) == list(idata.log_likelihood["protected_id"].values)
    assert 5 not in c["protected_id"].values and 9 in c["protected_id"].values
    assert 9 not in c["target_id"].values and 5 in c["target_id"].values
    both = sorted(set(c["target_id"].values.tolist()) & set(c["protected_id"].values.tolist()))
    assert len(both) > 0
    t = c["target_idx"].sel(target_id=both).values
    p = c["protected_idx"].sel(protected_id=both).values
    np.testing.assert_array_equal(t, p)  # a row's x row is the same whichever head's index it is read from


@pytest.mark.parametrize("batch_size", [128, 16])
def test_alpha_zero_fit_does_not_depend_on_the_adversary_or_on_the_protected_rows(batch_size):
    """QA alpha0_half.py / alpha0b.py: the adversary drew its rows, head draws and resets from torch's global
    generator, between the draws of the extractor and target step, so a same-seed alpha = 0 fit changed with
    adv_steps (1: max |dP| 0.14), adv_reset (0.13), or half the protected labels missing (0.09). The protected part
    now draws from a stream of its own (the protected plate's minibatches too): every such fit is the same plain
    classifier, bit for bit, and with adv_steps=0 it is the fit without any protected rows."""
    from pyrozoo.models.agnostic import attach_network, predict_proba

    rng = np.random.default_rng(0)
    y, g = rng.integers(0, 2, 80), rng.integers(0, 2, 80)
    noise = rng.standard_normal((80, 3))
    x = np.c_[y + 0.5 * noise[:, 0], g + 0.3 * noise[:, 1], y + g + 0.5 * noise[:, 2]]
    half_labels = g.copy()
    half_labels[::2] = -1  # x and y as they were
    full, half = attach_network(make_agnostic_data(x, y, g)), attach_network(make_agnostic_data(x, y, half_labels))
    base = {"alpha": 0.0, "batch_size": batch_size}
    reference = _tiny_fit(full, steps=12, **base)
    want = predict_proba(reference, full.inputs["x"], data=full)
    fits = [(full, {"adv_steps": 1}), (full, {"adv_steps": 10}), (full, {"adv_reset": 3}),
            (full, {"adv_lr": 0.1, "adv_retrain": 7}), (full, {"adv_weight_decay": 0.5}), (half, {}),
            (full, {"adv_steps": 0}), (_without_protected_rows(full), {"adv_steps": 0})]
    for data, opts in fits:
        fit = _tiny_fit(data, steps=12, **base, **opts)
        got = predict_proba(fit, full.inputs["x"], data=data)
        assert torch.equal(got, want), (opts, float((got - want).abs().max()))
        for name, value in reference.params.items():
            if "extractor" in name or name.endswith(("w_y", "b_y")):
                assert torch.equal(torch.as_tensor(fit.params[name]), torch.as_tensor(value)), (opts, name)
    assert not torch.equal(predict_proba(_tiny_fit(full, steps=12, **{**base, "alpha": 0.5}), full.inputs["x"],
                                         data=full), want)  # the adversary does act at alpha > 0
