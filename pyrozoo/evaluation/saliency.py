"""Most-informative-pixel maps (the analogue of Fig. 4 of Jia et al. 2018).

For an input ``x`` and a feature extractor ``G_f``, the map of the strongest feature response is

    S(x)_{hw} = max_c | d z_{k*}(x) / d x_{c h w} |,   k* = argmax_k z_k(x),

the pixels whose change moves the most active unit of the shared representation most (a gradient saliency map;
Zeiler & Fergus / Simonyan et al. style). Torch's autograd gives all maps of a batch in one backward pass because
each row's output depends only on its own input.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def feature_saliency(extractor: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Saliency maps ``(N, H, W)`` of the strongest feature unit for images ``x`` of shape ``(N, C, H, W)``."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        z = extractor(x)
        k = z.argmax(dim=1, keepdim=True)
        z.gather(1, k).sum().backward()
    return x.grad.abs().amax(dim=1).cpu().numpy()


def least_correlated(maps_a: np.ndarray, maps_b: np.ndarray, k: int = 3) -> np.ndarray:
    """Indices of the ``k`` images whose two maps correlate least (the paper's selection for Fig. 4)."""
    a = maps_a.reshape(maps_a.shape[0], -1)
    b = maps_b.reshape(maps_b.shape[0], -1)
    a = (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-12)
    b = (b - b.mean(1, keepdims=True)) / (b.std(1, keepdims=True) + 1e-12)
    corr = (a * b).mean(1)
    return np.argsort(corr)[:k]


def background_share(maps: np.ndarray, ink: np.ndarray, threshold: float = 0.25) -> np.ndarray:
    """Fraction of each map's saliency mass on background pixels (ink below ``threshold``)."""
    bg = ink < threshold
    return (maps * bg).sum((-1, -2)) / np.maximum(maps.sum((-1, -2)), 1e-12)
