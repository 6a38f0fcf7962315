"""One run of one zoo model, start to finish: the code path behind ``pyrozoo run`` and every sweep cell."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pyrozoo import registry
from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.assemble import check_pointwise_size, pointwise_size_checked, without_log_likelihood
from pyrozoo.inference.device import keeps_caller_state, resolve_device, set_seed
from pyrozoo.inference.result import Result
from pyrozoo.inference.rundir import check_out_dir, remove_stale_temporaries, save_run
from pyrozoo.registry import SETTINGS


@dataclass
class RunOutput:
    result: Result
    metrics: dict[str, Any]
    out: Path | None


def default_out_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/MODEL/YYYYmmdd-HHMMSS-INFERENCE-seedN`` (a new name each time, so repeated runs never collide)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / config.model / f"{stamp}-{config.inference}-seed{config.seed}"
    k = 1
    while path.exists():
        path = path.with_name(f"{stamp}-{config.inference}-seed{config.seed}-{k}")
        k += 1
    return path


def _device_hint(error: RuntimeError, model: str, device: torch.device) -> Exception:
    """torch's "Expected all tensors to be on the same device" from a model that makes tensors on the CPU (a
    ``torch.tensor(0.0)`` or ``torch.zeros(3)`` without ``device=``) while the runner moved its data to ``device``,
    said as what to change; any other error unchanged."""
    if "same device" not in str(error):
        return error
    return PyrozooError(
        f"model {model!r}: its tensors are on two devices ({str(error).strip().splitlines()[0]}); the data were moved "
        f"to {device}, so the model must create its tensors on its inputs' device (torch.zeros(3, device=x.device), "
        f"x.new_tensor(0.0)), or run with --device cpu")


def unapplied_settings(config: RunConfig, given: Collection[str] | None = None) -> list[str]:
    """The engine settings (:data:`~pyrozoo.registry.SETTINGS`) that ``config``'s inference does not read and that
    were ``given`` (the CLI passes the flags and ``--config`` keys it got); ``given=None`` (a :class:`RunConfig` from
    Python) takes those set to other than :class:`RunConfig`'s defaults, since the defaults are not the caller's
    request. ``config.inference`` must be filled (:meth:`~pyrozoo.registry.ZooModel.check_config`)."""
    unread = registry.get(config.model).unread_settings(config.inference)
    if given is None:
        defaults = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.name in SETTINGS}
        return [k for k in unread if getattr(config, k) != defaults[k]]
    return [k for k in unread if k in given]


def unapplied_message(config: RunConfig, ignored: Collection[str]) -> str:
    """``MODEL's INFERENCE does not read S, so it did not apply; ...``: what :func:`run_model` says about the
    settings :func:`unapplied_settings` found."""
    it, them = ("it", "it") if len(ignored) == 1 else ("they", "them")
    hint = " (r_hat needs an MCMC or Gibbs inference with several chains)" if "num_chains" in ignored else ""
    return (f"{config.model}'s {config.inference} does not read {', '.join(ignored)}, so {it} did not apply; the "
            f"recorded config (config.toml, result.config) leaves {them} out{hint}")


def tidy_out_dir(out: Path, note: Callable[[str], None] | None = None) -> None:
    """Remove the hidden temporaries ``.NAME.PID-HOST.XXXX.tmp`` that a run of ``out`` killed while saving (SIGKILL,
    out of memory) left beside it, those of a process of this host that is gone
    (:func:`~pyrozoo.inference.rundir.remove_stale_temporaries`), and say so by ``note(text)`` (else a
    :class:`UserWarning`); warn of those it cannot tell from a live run's (another host's, or an older pyrozoo's,
    whose names do not record the writer) and leave them."""
    removed, unknown = remove_stale_temporaries(out)
    if removed:
        text = (f"removed {len(removed)} temporary director{'y' if len(removed) == 1 else 'ies'} that a run of {out} "
                f"killed while saving left beside it: {', '.join(p.name for p in removed)}")
        if note is not None:
            note(text)
        else:
            warnings.warn(text, UserWarning, stacklevel=4)
    if unknown:
        warnings.warn(f"out: {', '.join(p.name for p in unknown)} beside {out} may be the temporary of a run of it "
                      f"that is still saving (its name does not record a process of this host), so it is left "
                      f"alone; delete it if no run is writing {out}", UserWarning, stacklevel=4)


def check_run_size(config: RunConfig, dataset: Dataset, *, save: bool = True) -> None:
    """Refuse, before the fit, a run whose pointwise arrays would not fit in memory
    (:func:`~pyrozoo.inference.assemble.check_pointwise_size`): C x S x N values for the log-likelihood (unless
    ``config.log_likelihood`` is false) and, when a saved run asks for it, C x S x M for the posterior predictive;
    C and S are ``num_chains`` and ``num_samples`` where ``config.inference`` reads them (else 1, and the message
    names only those it reads), N the log-likelihood's values per draw on ``dataset`` as the entry counts them
    (:meth:`~pyrozoo.registry.ZooModel.pointwise_sizes`: one per observed value unless the entry's
    ``log_likelihood_size`` says otherwise, as regime-scm's one per row) and M the observed values."""
    entry = registry.get(config.model)
    reads = entry.settings.get(config.inference, SETTINGS)
    chains = config.num_chains if "num_chains" in reads else 1
    draws = config.num_samples if "num_samples" in reads else 1
    num_ll, num_pp = entry.pointwise_sizes(dataset)
    check_pointwise_size(chains, draws, num_ll, log_likelihood=config.log_likelihood,
                         posterior_predictive=save and config.posterior_predictive, predictive_values=num_pp,
                         settings=reads)


@keeps_caller_state
def run_model(config: RunConfig, *, out: str | Path | None = None, save: bool = True,
              overwrite: bool = False, given: Collection[str] | None = None,
              note: Callable[[str], None] | None = None) -> RunOutput:
    """Validate ``config``, load or simulate the data, fit, score and (if ``save``) write the run directory.

    All validation (model, inference, options, device, output directory, data, size) happens before fitting
    starts, and the run directory appears only when complete. Only once every check has passed, right before the
    fit, are the temporaries that a killed save of ``out`` left removed (:func:`tidy_out_dir`, said by ``note``):
    a refused run changes nothing on disk. Settings the inference does not read that were ``given`` (see
    :func:`unapplied_settings`; ``None``: those not at their defaults) are named before the fit, by ``note(text)``
    (the CLI prints it) or, without ``note``, as a :class:`UserWarning`.

    A run whose pointwise log-likelihood (and posterior predictive, if asked) would not fit in memory is refused
    after the data are loaded and before the fit (:func:`check_run_size`, after the entry's own ``check_data``
    refusal of data the model cannot fit at all, such as the exact GP's too many rows; should the fit's
    log-likelihood prove larger than estimated, it is refused, not left out as for a Python caller);
    ``config.log_likelihood=False`` leaves the log-likelihood out of the fit and the run (no ``log_likelihood``
    group: az.loo/az.waic will not work).

    A saved run of a Markov-chain engine records in ``metrics.json``, under ``convergence``, the figures behind
    ``pyrozoo run``'s convergence warnings (:func:`~pyrozoo.evaluation.diagnostics.convergence_figures`), for
    ``pyrozoo report``; the returned ``metrics`` are the model's.

    ``result.config`` records the resolved device (``"auto"`` reads ``"cpu"`` or ``"cuda"``), as the InferenceData's
    ``device`` attribute does; the run directory's ``config.toml`` keeps the requested one, so that a rerun with
    ``--config`` picks its device again on its own machine.
    """
    entry = registry.get(config.model)
    entry.check_config(config)
    device = resolve_device(config.device)
    out_path = None
    if save:
        out_path = check_out_dir(out if out is not None else default_out_dir(config), overwrite=overwrite)
    set_seed(config.seed)  # a simulator that draws from the global RNG (not a seeded generator) is reproducible too
    dataset = entry.load_data(config).to(device)
    if entry.check_data is not None:  # the model's own refusal (no flag fixes it) before the pointwise-size one
        entry.check_data(dataset, config)
    check_run_size(config, dataset, save=save)  # a run too big for memory is refused before the fit, not OOM-killed
    ignored = unapplied_settings(config, given)
    if ignored:
        if note is not None:
            note(unapplied_message(config, ignored))
        else:  # past keeps_caller_state, at the caller
            warnings.warn(unapplied_message(config, ignored), UserWarning, stacklevel=3)
    if out_path is not None:  # every check passed: only now change the disk (a refused run leaves it as it was)
        tidy_out_dir(out_path, note)  # what a run of out killed while saving left
    try:
        # checked above: an oversized log-likelihood is refused, not left out with a warning as for Python callers
        with without_log_likelihood(not config.log_likelihood), pointwise_size_checked():
            result = entry.fit(dataset, config)
        metrics = entry.compute_metrics(result, dataset)  # checked (numbers, lists of names) before any write
    except RuntimeError as error:
        raise _device_hint(error, config.model, device) from error
    # what ran (without the settings the inference does not read) on the device it ran on; config.toml, the rerun
    # recipe, keeps the device as asked
    result.config = entry.recorded_config(dataclasses.replace(config, device=str(device)))
    if save:
        from pyrozoo.evaluation.diagnostics import convergence_record

        # a Markov chain's sampler and convergence figures beside the metrics, where `pyrozoo report` reads them
        recorded = {**metrics, **convergence_record(result.to_inference_data())}
        artifacts = None
        if entry.artifacts is not None:
            def artifacts(tmp: Path) -> None:
                entry.artifacts(result, dataset, tmp)
        save_run(result, out_path, config=entry.recorded_config(config), metrics=recorded,
                 posterior_predictive=config.posterior_predictive, overwrite=overwrite, artifacts=artifacts)
    return RunOutput(result, metrics, out_path)
