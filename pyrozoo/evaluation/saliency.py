"""Most-informative-pixel maps (the analogue of Fig. 4 of Jia et al. 2018).

For an input ``x`` and a feature extractor ``G_f``, the map of the strongest feature response is

    S(x)_{hw} = max_c | d z_{k*}(x) / d x_{c h w} |,   k* = argmax_k z_k(x),

the pixels whose change moves the most active unit of the shared representation most (a gradient saliency map;
Zeiler & Fergus / Simonyan et al. style). ``k`` runs over every unit of a row's features, whatever their shape: a
convolutional extractor's ``(C', h, w)`` map is flattened first. The extractor is evaluated in eval mode (BatchNorm
on its running statistics, no dropout; its modes are restored after), so each row's output depends only on its own
input and one backward pass gives all maps of a batch; the gradient is taken with respect to the input only, so the
extractor's parameters' ``.grad`` are left as they were. The extractor may be an ``AgnosticNetwork`` (what
``pyrozoo.models.agnostic.fitted_network`` returns: its ``G_f``, ``.extractor``, is used), and ``x`` is cast to the
extractor's parameter dtype and device (as ``predict_proba`` does), so float64 images work with a float32 network.
A network that knows its inputs' shape (an ``AgnosticNetwork``, or its extractor, built for the training inputs)
takes only images shaped like them, as ``predict_proba`` checks; a plain module is run on ``x`` as given.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_finite, check_int


def feature_saliency(extractor: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Saliency maps ``(N, H, W)``, ``S_hw = max_c |d z_k* / d x_chw|`` with ``k* = argmax_k z_k`` over all units of
    a row's features, for images ``x`` of shape ``(N, C, H, W)``; the extractor (a module, or an
    ``AgnosticNetwork``, whose ``.extractor`` is used) runs in eval mode, on ``x`` cast to its parameters' dtype and
    device. With a network that records its training inputs' shape (``input_shape``: an ``AgnosticNetwork`` or its
    extractor) ``x`` must be shaped ``(N, *input_shape)``, and a table network is refused."""
    from pyrozoo.models.agnostic import AgnosticNetwork, check_input_shape

    row = getattr(extractor, "input_shape", None) if isinstance(extractor, nn.Module) else None
    if isinstance(extractor, AgnosticNetwork):  # fitted_network(result, data): the saliency of its G_f
        extractor = extractor.extractor
        row = row if row is not None else getattr(extractor, "input_shape", None)
    if not isinstance(extractor, nn.Module):
        raise PyrozooError(f"extractor: expected a torch module (G_f) or an AgnosticNetwork, got "
                           f"{type(extractor).__name__}")
    if row is not None and len(row) != 3:
        raise PyrozooError(f"extractor: expected a network of images (C, H, W) (saliency maps are over pixels), got "
                           f"one built for table rows shaped (N, {', '.join(map(str, row))})")
    if isinstance(x, torch.Tensor) and row is not None:
        check_input_shape("x", x, row)
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] == 0:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise PyrozooError(f"x: expected a tensor of images (N, C, H, W) with N >= 1, got {got}")
    if not torch.is_floating_point(x):
        raise PyrozooError(f"x: expected floating-point pixels, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise PyrozooError(f"x: expected finite pixels, got {int((~torch.isfinite(x)).sum())} NaN or inf")
    ref = next(extractor.parameters(), None)
    if ref is not None and torch.is_floating_point(ref):  # float64 images with a float32 network, CPU x with CUDA
        x = x.to(device=ref.device, dtype=ref.dtype)
    x = x.detach().clone().requires_grad_(True)
    modes = {m: m.training for m in extractor.modules()}
    extractor.eval()  # train-mode BatchNorm mixes the rows of the batch (and would update its running statistics)
    try:
        with torch.enable_grad():
            z = extractor(x)
            if z.ndim < 1 or z.shape[0] != x.shape[0] or not z.requires_grad:
                raise PyrozooError(f"extractor: expected features with one row per image ({x.shape[0]}) that depend "
                                   f"on x through autograd, got shape {tuple(z.shape)}, requires_grad "
                                   f"{z.requires_grad}")
            z = z.reshape(z.shape[0], -1)  # every unit of a row competes for k*, e.g. all of a conv's (C', h, w)
            k = z.argmax(dim=1, keepdim=True)
            # w.r.t. x only: parameters' .grad untouched. Features that require grad through the parameters alone
            # (a learned constant) leave x out of the graph: allow_unused gives None, refused below
            (grad,) = torch.autograd.grad(z.gather(1, k).sum(), x, allow_unused=True)
            if grad is None:
                raise PyrozooError(f"extractor: expected features with one row per image ({x.shape[0]}) that depend "
                                   f"on x through autograd, got shape {tuple(z.shape)} computed without x (they "
                                   f"depend on the extractor's parameters only)")
    finally:
        for m, training in modes.items():
            m.training = training
    return grad.abs().amax(dim=1).cpu().numpy()


def least_correlated(maps_a: np.ndarray, maps_b: np.ndarray, k: int = 3) -> np.ndarray:
    """Indices of the ``min(k, N)`` images whose two maps correlate least (the paper's selection for Fig. 4), least
    first, by the Pearson correlation of image ``i``'s two maps over their pixels, ``corr_i = mean_hw(u_i v_i)``
    with ``u_i, v_i`` the maps standardized over their pixels. ``maps_a`` and ``maps_b``: finite arrays of one shape
    ``(N, ...)``, one map per image, ``N >= 1``; ``k`` an integer >= 1 (a ``k`` above ``N`` gives all ``N``,
    ordered)."""
    k = check_int("k", k, minimum=1)
    a, b = np.asarray(maps_a, dtype=np.float64), np.asarray(maps_b, dtype=np.float64)
    if a.ndim < 2 or a.shape[0] == 0 or a[0].size == 0:
        raise PyrozooError(f"maps_a: expected one map per image, shape (N, ...) with N >= 1 and at least one pixel, "
                           f"got shape {a.shape}")
    if b.shape != a.shape:
        raise PyrozooError(f"maps_b: expected the shape of maps_a {a.shape} (the same images' maps), got shape "
                           f"{b.shape}")
    check_finite("maps_a", a)
    check_finite("maps_b", b)
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    a = (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-12)
    b = (b - b.mean(1, keepdims=True)) / (b.std(1, keepdims=True) + 1e-12)
    corr = (a * b).mean(1)
    return np.argsort(corr)[:k]


def background_share(maps: np.ndarray, ink: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Fraction of each map's saliency mass on background pixels (ink below ``threshold``)."""
    bg = ink < threshold
    return (maps * bg).sum((-1, -2)) / np.maximum(maps.sum((-1, -2)), 1e-12)
