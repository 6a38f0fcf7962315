"""Gradient saliency maps: k* over all feature units, eval mode, gradients w.r.t. the input only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pyrozoo.errors import PyrozooError
from pyrozoo.evaluation.saliency import feature_saliency


def _one_by_one(extractor: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Reference straight from the formula: per image, flatten all units, take the argmax unit's input gradient."""
    maps = []
    for i in range(x.shape[0]):
        xi = x[i:i + 1].clone().requires_grad_(True)
        z = extractor(xi).flatten()
        (g,) = torch.autograd.grad(z[z.argmax()], xi)
        maps.append(g.abs().amax(1)[0].numpy())
    return np.stack(maps)


def test_conv_features_use_the_argmax_over_all_units():
    """A Conv2d's (N, C', h, w) features: k* is the argmax over all C' h w units of a row, so each map is one unit's
    receptive field (9 pixels for a 3x3 kernel), not the sum of per-position channel maxima (the old result, which
    lit up the whole image)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 3, 3)
    x = torch.randn(2, 1, 6, 6)
    maps = feature_saliency(conv, x)
    want = _one_by_one(conv, x)
    assert maps.shape == (2, 6, 6)
    np.testing.assert_allclose(maps, want, atol=1e-6)
    assert ((maps > 0).sum((1, 2)) <= 9).all()


def test_batchnorm_runs_in_eval_mode_and_the_mode_and_grads_are_restored():
    """With train-mode BatchNorm a row's map depended on the rest of the batch and each call moved the running
    statistics; parameters' .grad accumulated across calls. Now: row 0's map is the same alone or in a batch, the
    running statistics and each module's mode are as before, and no parameter gets a .grad."""
    torch.manual_seed(1)
    ext = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    ext[3].eval()  # a mixed state must come back as it was, not as ext.train()
    x = torch.randn(5, 1, 4, 4)
    before = ext[2].running_mean.clone()
    full = feature_saliency(ext, x)
    alone = feature_saliency(ext, x[:1])
    np.testing.assert_allclose(full[:1], alone, atol=1e-6)
    assert torch.equal(ext[2].running_mean, before)
    assert ext.training and ext[2].training and not ext[3].training
    assert all(p.grad is None for p in ext.parameters())
    np.testing.assert_allclose(full, _one_by_one(ext.eval(), x), atol=1e-6)


def test_bad_images_are_refused_naming_x():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    for bad, says in [(torch.randn(4, 4), "x: expected a tensor of images (N, C, H, W)"),
                      (torch.zeros(0, 1, 4, 4), "with N >= 1, got shape (0, 1, 4, 4)"),
                      (torch.ones(2, 1, 4, 4, dtype=torch.long), "x: expected floating-point pixels"),
                      (torch.full((2, 1, 4, 4), float("nan")), "x: expected finite pixels, got 32 NaN or inf")]:
        with pytest.raises(PyrozooError, match="^x: ") as err:
            feature_saliency(lin, bad)
        assert says in str(err.value)


def test_features_that_depend_on_the_parameters_but_not_on_x_are_refused_naming_extractor():
    """Learned features that ignore x require grad through the parameters, so the requires_grad check passed and
    torch raised a bare RuntimeError ("... appears to not have been used in the graph"). Now a PyrozooError, with
    the extractor's modes restored."""

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.w.expand(x.shape[0], 3) * 1.0

    ext = Constant()
    with pytest.raises(PyrozooError, match=r"^extractor: expected features .* that depend on x") as err:
        feature_saliency(ext, torch.randn(2, 1, 3, 3))
    assert "parameters only" in str(err.value)
    assert ext.training and ext.w.grad is None


def test_an_agnostic_network_and_float64_images_are_accepted():
    """QA t15.py / t14.py: fitted_network's AgnosticNetwork (the docs point at this module for it) failed with torch's
    "missing the required forward function", and float64 images with a float32 extractor with "Input type (double)
    and bias type (float) should be the same". The network's G_f (.extractor) is used, and x is cast to the
    extractor's parameter dtype and device."""
    from pyrozoo.models.agnostic import AgnosticNetwork

    torch.manual_seed(0)
    x = torch.rand(3, 2, 8, 8)
    net = AgnosticNetwork.for_inputs(x, feature_dim=4)
    want = feature_saliency(net.extractor, x)
    assert want.shape == (3, 8, 8) and want.dtype == np.float32 and (want > 0).any()
    np.testing.assert_array_equal(feature_saliency(net, x), want)
    np.testing.assert_allclose(feature_saliency(net.extractor, x.double()), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(feature_saliency(net, x.double()), want, rtol=1e-5, atol=1e-7)
    with pytest.raises(PyrozooError, match=r"^extractor: expected a torch module \(G_f\) or an AgnosticNetwork, got "
                                           r"function$"):
        feature_saliency(lambda v: v, x)


def test_least_correlated_orders_by_correlation_and_checks_k_and_shapes():
    """QA: k=-1 silently returned 4 of 5 indices (argsort[:-1]), k=2.5 raised a raw TypeError and maps of different
    counts a raw NumPy broadcast error. k is now an integer >= 1 (above the number of maps: all of them, ordered)
    and the two arrays must have one shape."""
    from pyrozoo.evaluation.saliency import least_correlated

    rng = np.random.default_rng(0)
    a = rng.random((5, 4, 4))
    mix = np.array([1.0, 0.2, 0.6, 0.0, 0.9])[:, None, None]  # image 3 independent, image 0 identical
    b = mix * a + (1 - mix) * rng.random((5, 4, 4))
    corr = [np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in range(5)]
    np.testing.assert_array_equal(least_correlated(a, b, 2), np.argsort(corr)[:2])
    np.testing.assert_array_equal(least_correlated(a, b, 9), np.argsort(corr))
    assert least_correlated(a, b, 5)[-1] == 0
    for k in (-1, 0, 2.5, True, "2"):
        with pytest.raises(PyrozooError, match=r"^k: expected an integer >= 1, got "):
            least_correlated(a, b, k)
    with pytest.raises(PyrozooError, match=r"^maps_b: expected the shape of maps_a \(5, 4, 4\) .*got shape "
                                           r"\(4, 4, 4\)$"):
        least_correlated(a, b[:4])
    with pytest.raises(PyrozooError, match=r"^maps_a: expected one map per image, .*got shape \(0, 4, 4\)$"):
        least_correlated(a[:0], b[:0])
    with pytest.raises(PyrozooError, match=r"^maps_b: .*NaN"):
        least_correlated(a, np.where(a > 0.5, np.nan, b))


def test_images_shaped_unlike_the_networks_inputs_are_refused_with_both_shapes():
    """QA11 i.py / e.py: a 12x12 one-channel AgnosticNetwork given 9x9 images failed with torch's "mat1 and mat2
    shapes cannot be multiplied", given 3 channels with "Given groups=1, weight of size [8, 1, 3, 3]", and a table
    network given (N, C, H, W) input with another matmul error. A network that records its training inputs' shape
    (the AgnosticNetwork, or its extractor) now refuses them as predict_proba does, naming both shapes; a plain
    module still gets x as given."""
    from pyrozoo.models.agnostic import AgnosticNetwork

    torch.manual_seed(0)
    net = AgnosticNetwork.for_inputs(torch.rand(4, 1, 12, 12), feature_dim=4, hidden=8)
    assert net.input_shape == net.extractor.input_shape == (1, 12, 12)
    for module in (net, net.extractor):
        for bad in ((2, 1, 9, 9), (2, 3, 12, 12)):
            with pytest.raises(PyrozooError, match=rf"^x: expected rows shaped \(N, 1, 12, 12\) like the training "
                                                   rf"inputs, got shape \({', '.join(map(str, bad))}\)$"):
                feature_saliency(module, torch.rand(*bad))
        with pytest.raises(PyrozooError, match=r"^x: expected rows shaped \(N, 1, 12, 12\), got one row of shape "
                                               r"\(1, 12, 12\); pass x\[None\]"):
            feature_saliency(module, torch.rand(1, 12, 12))
        assert feature_saliency(module, torch.rand(2, 1, 12, 12)).shape == (2, 12, 12)
    table = AgnosticNetwork.for_inputs(torch.rand(6, 2), feature_dim=2, hidden=4)
    for module in (table, table.extractor):
        with pytest.raises(PyrozooError, match=r"^extractor: expected a network of images \(C, H, W\) .*got one "
                                               r"built for table rows shaped \(N, 2\)$"):
            feature_saliency(module, torch.rand(2, 2, 1, 1))
    # a user's module knows no input shape: torch's own error, as before
    with pytest.raises(RuntimeError, match="channels"):
        feature_saliency(nn.Conv2d(1, 2, 3), torch.rand(2, 3, 6, 6))


def test_a_fitted_networks_extractor_keeps_the_input_shape():
    """fitted_network copies the dataset's network, so its extractor (the G_f that saliency maps use) is checked too."""
    from pyrozoo.config import RunConfig
    from pyrozoo.data.agnostic_tasks import make_agnostic_data
    from pyrozoo.models.agnostic import attach_network, fit_agnostic, fitted_network

    rng = np.random.default_rng(0)
    data = attach_network(make_agnostic_data(rng.random((20, 1, 8, 8)).astype(np.float32), rng.integers(0, 2, 20),
                                             rng.integers(0, 2, 20)), feature_dim=2, hidden=4)
    result = fit_agnostic(data, RunConfig(model="agnostic", device="cpu", steps=1, num_samples=2, progress=False))
    net = fitted_network(result, data)
    assert net.extractor.input_shape == (1, 8, 8)
    with pytest.raises(PyrozooError, match=r"^x: expected rows shaped \(N, 1, 8, 8\) like the training inputs, got "
                                           r"shape \(2, 1, 9, 9\)$"):
        feature_saliency(net.extractor, torch.rand(2, 1, 9, 9))
