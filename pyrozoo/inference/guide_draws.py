"""Draws of a model's latents from a fitted guide: all at once in a plate where the guide vectorizes, one guide run
per draw where it does not.

One guide run per draw costs a Python trace per draw: 100,000 draws of a two-site guide took 27 s on a CPU core and
over 300 s on a shared GPU (kernel launches). Run inside ``pyro.plate(S)`` left of the guide's own batch dims, a
guide written with Pyro's idioms returns S draws from one trace (the rule of ``Predictive(parallel=True)``, which
Pyro leaves opt-in because a guide can mix draws across the plate).

Pyro's own AutoGuides that draw from their parameters alone (``AutoNormal``, ``AutoDelta``, the ``AutoContinuous``
family, lists of them) are the guides Pyro itself runs under such a plate (``vectorize_particles``), and are drawn
plated without more ado. Any other guide (a hand-written one, a messenger guide, which runs the user's model) is
checked on its first plated chunk: its first, middle and last draws are replayed through the guide alone, and must
give the same log-density at every random site and the same value at every deterministic (``Delta``) site. A guide
that fails the check, raises or returns other shapes under the plate, or subsamples is drawn one run per draw.
The check samples three draws: a guide that mixes only other draws of the plate (draw i reading draw i + 1), or a
distribution whose ``sample`` ignores its batch shape, can pass it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer.autoguide import AutoContinuous, AutoDelta, AutoGuideList, AutoNormal
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pyrozoo.errors import PyrozooError

#: Elements (all sample sites of one draw times the draws) one vectorized guide run holds at most.
CHUNK_ELEMENTS = 2**22
_PLATE = "_pyrozoo_guide_draws"


def guide_sites(trace: poutine.Trace) -> list[str]:
    """Names of the sample sites a guide draws, leaving out observed, ``_``-prefixed auxiliary and subsample sites."""
    return [n for n, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]
            and not n.startswith("_") and not site_is_subsample(s)]


def _pyro_autoguide(guide: Any) -> bool:
    """Whether ``guide`` (or the guide a fit wraps) is one of Pyro's AutoGuides that draw from their parameters
    alone, without running the user's model: these vectorize under a plate by construction."""
    from pyrozoo.inference.svi import FittedGuide  # svi imports this module

    guide = guide.guide if isinstance(guide, FittedGuide) else guide
    if isinstance(guide, AutoGuideList):
        return all(_pyro_autoguide(part) for part in guide)
    return isinstance(guide, (AutoNormal, AutoDelta, AutoContinuous))


def _random_sites(trace: poutine.Trace) -> dict[str, dict]:
    """Every unobserved sample site of a guide trace, auxiliary ones included (the check replays them all), plates'
    subsample sites left out."""
    return {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]
            and not site_is_subsample(s)}


def _subsamples(trace: poutine.Trace) -> bool:
    """Whether a plate of the guide draws a random subsample (one per run: a plated run would share it)."""
    return any(site_is_subsample(s) and s["fn"].subsample_size not in (None, s["fn"].size)
               for s in trace.nodes.values() if s["type"] == "sample")


def _is_delta(fn: Any) -> bool:
    """Whether a site's distribution is a ``Delta`` (possibly wrapped: ``to_event``, ``expand``, a mask)."""
    while not isinstance(fn, dist.Delta) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, dist.Delta)


def _nesting(trace: poutine.Trace) -> int:
    """The batch dims the guide's sites use (their plates and implicit batch shapes; observed sites too, which a
    messenger guide's run of the model holds): the draw plate goes left of them."""
    dims = [0]
    for site in trace.nodes.values():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        dims.append(len(site["fn"].batch_shape))
        dims += [-f.dim for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None]
    return max(dims)


def _sequential(guide: Callable, model_kwargs: Mapping[str, Any], names: list[str],
                num: int) -> dict[str, torch.Tensor]:
    draws: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for _ in range(num):
        tr = poutine.trace(guide).get_trace(**model_kwargs)
        for n in names:
            draws[n].append(tr.nodes[n]["value"].detach())
    return {n: torch.stack(v) for n, v in draws.items()}


def _draw_index(site: dict, nesting: int) -> int:
    """The dim of a vectorized site's value that runs over the draws."""
    return len(site["fn"].batch_shape) - (nesting + 1)


def _vectorized(guide: Callable, model_kwargs: Mapping[str, Any], proto: poutine.Trace, nesting: int,
                num: int, names: list[str], check: bool) -> dict[str, torch.Tensor] | None:
    """``num`` draws of every random site from one guide run in a plate, each ``(num, *site_shape)``; ``None`` where
    the guide does not vectorize (it raised, its sites changed, or a value came out in another shape), where one of
    ``names`` is not a random site of the guide (a ``pyro.deterministic`` one), or where the replay check fails."""
    def plated(**kwargs: Any) -> Any:
        with pyro.plate(_PLATE, num, dim=-(nesting + 1)):
            return guide(**kwargs)

    sites = _random_sites(proto)
    if not set(names) <= set(sites):
        return None
    try:
        tr = poutine.trace(plated).get_trace(**model_kwargs)
        if check:  # the densities the replays compare with
            tr.compute_log_prob(site_filter=lambda name, site: name in sites)
    except Exception:  # noqa: BLE001 -- any failure under the plate means: draw one run at a time
        return None
    if set(_random_sites(tr)) != set(sites):
        return None
    out = {}
    for name, site in _random_sites(tr).items():
        value, shape = site["value"].detach(), proto.nodes[name]["value"].shape
        at = _draw_index(site, nesting)
        if at < 0 or value.shape[at] != num or value.numel() != num * math.prod(shape):
            return None
        out[name] = value.movedim(at, 0).reshape((num, *shape))
    for i in sorted({0, num // 2, num - 1}) if check else ():
        if not _replays_alone(guide, model_kwargs, tr, out, sites, nesting, i):
            return None
    return out


class _AtValues(Messenger):
    """Sample sites named in ``values`` take those values: ``poutine.replay`` without its copy of the replayed
    site's ``infer`` dict, which would wipe the model's prior a messenger guide keeps there."""

    def __init__(self, values: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg: dict) -> None:
        if msg["name"] in self.values and not msg["is_observed"]:
            msg["value"], msg["done"] = self.values[msg["name"]], True


def _replays_alone(guide: Callable, model_kwargs: Mapping[str, Any], tr: poutine.Trace,
                   out: Mapping[str, torch.Tensor], sites: Mapping[str, dict], nesting: int, i: int) -> bool:
    """Whether draw ``i`` of the vectorized trace ``tr`` is what the guide run alone gives: replayed at the draw's
    random values, the same log-density at each of them and the same value at each ``Delta`` site."""
    random = [n for n in sites if not _is_delta(tr.nodes[n]["fn"])]
    try:
        re = poutine.trace(_AtValues({n: out[n][i] for n in random})(guide)).get_trace(**model_kwargs)
        re.compute_log_prob(site_filter=lambda name, site: name in random)
    except Exception:  # noqa: BLE001
        return False
    for n in sites:
        if n not in re.nodes:
            return False
        if n not in random:
            if not torch.allclose(re.nodes[n]["value"].detach(), out[n][i], rtol=1e-4, atol=1e-6):
                return False
            continue
        lp = tr.nodes[n]["log_prob"]
        at = lp.dim() - (nesting + 1)
        if at < 0 or lp.shape[at] != tr.nodes[n]["value"].shape[_draw_index(tr.nodes[n], nesting)]:
            return False
        vec, one = lp.select(at, i).sum(), re.nodes[n]["log_prob"].sum()
        if not torch.isclose(vec, one, rtol=1e-4, atol=1e-4):
            return False
    return True


def draw_from_guide(guide: Callable, model_kwargs: Mapping[str, Any], names: list[str],
                    num_samples: int) -> dict[str, torch.Tensor]:
    """``num_samples`` draws of the model's latents ``names`` from ``guide``, each shaped ``(1, S, ...)``; a name the
    guide does not draw is a :class:`PyrozooError`. Drawn in chunks of at most :data:`CHUNK_ELEMENTS` elements, each
    chunk in one plated guide run where the guide vectorizes (see the module's docstring), else one run per draw."""
    with torch.no_grad():
        proto = poutine.trace(guide).get_trace(**model_kwargs)
        missing = [n for n in names if n not in proto.nodes]
        if missing:
            raise PyrozooError(f"guide: no draws of the model's latent site(s) {missing}; expected every latent "
                               f"site {names}, got {guide_sites(proto)}")
        # observed sites count too: a messenger guide runs the model, likelihood included, once per draw
        per_draw = sum(s["value"].numel() for s in proto.nodes.values()
                       if s["type"] == "sample" and not site_is_subsample(s))
        chunk = max(1, min(num_samples, CHUNK_ELEMENTS // max(1, per_draw)))
        nesting, parts, vectorizes = _nesting(proto), [], chunk > 1 and not _subsamples(proto)
        check = not _pyro_autoguide(guide)
        for start in range(0, num_samples, chunk):
            num = min(chunk, num_samples - start)
            got = (_vectorized(guide, model_kwargs, proto, nesting, num, names, check) if vectorizes and num > 1
                   else None)
            if got is None:
                vectorizes = False  # a guide that failed once is drawn one run at a time from then on
                got = _sequential(guide, model_kwargs, names, num)
            else:
                check = False  # the guide's code vectorizes: the later chunks run the same code
            parts.append({n: got[n] for n in names})
    return {n: torch.cat([p[n] for p in parts]).unsqueeze(0) for n in names}
