"""Name -> zoo entry. Each model module registers its entries with :func:`register`; importing
:mod:`pyrozoo.models` loads them all, so adding a model is adding a module under ``pyrozoo/models/``."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import numbers
import pkgutil
import traceback
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrozoo.config import RunConfig
from pyrozoo.data.dataset import Dataset
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import resolve_device
from pyrozoo.inference.result import (
    RESPONSE_ATTRS,
    Result,
    label_observations,
    observation_count,
    response_in_data_units,
    response_map,
)
from pyrozoo.validation import check_keys, check_option_types

# RunConfig's engine settings, and the sets the shared engines read (``ZooModel.settings`` maps inferences to them)
SETTINGS = ("num_samples", "warmup_steps", "num_chains", "steps", "lr", "jit")
MCMC_SETTINGS = ("num_samples", "warmup_steps", "num_chains", "jit")
GIBBS_SETTINGS = ("num_samples", "warmup_steps", "num_chains")
SVI_SETTINGS = ("steps", "lr", "num_samples")
# data-source names of ``data_options`` that are not shipped datasets' (see :func:`data_source`)
RESERVED_SOURCES = ("simulator", "file")


@dataclass
class ZooModel:
    """What the CLI, the sweep runner and the shared tests need to treat every model the same way.

    * ``model``: the Pyro model, called as ``model(**dataset.model_kwargs())``. No option is passed to it:
      options reach the model only through the dataset that ``simulate`` or a loader builds from them (an
      option the model needs goes into the dataset's ``inputs``);
    * ``simulate(seed, **options) -> Dataset``: the paper's generator;
    * ``fit(dataset, config) -> Result``: runs ``config.inference`` (one of ``inferences``); the entry's ``fit``
      labels the result's ``obs_id`` axis with the dataset's ``meta["rows"]`` when the loader set them (or each
      axis of a ``{axis: labels}`` mapping there)
      (:class:`LabelledFit`), so every model's InferenceData traces observations back to the user's rows alike
      (a result that is not a ``Result``, or rows with no ``obs_id`` axis to label, are errors there);
    * ``inferences``: engine names, the first is the default;
    * ``metrics(result, dataset) -> dict[str, float]``: scores written to ``metrics.json``;
    * ``options``: model/simulator options and their defaults (the only keys a config's ``[options]`` may hold); a
      config's ``options`` hold only those the user gave, so a fit or ``check_options`` reads them with their
      defaults through :meth:`merged_options`;
    * ``datasets``: named loaders of shipped real data, ``loader(seed, **options) -> Dataset``; not named
      ``"simulator"`` or ``"file"`` (:data:`RESERVED_SOURCES`, the other sources' names in ``data_options``);
    * ``tiny``: config overrides that make every inference run in seconds (shared tests, CLI smoke runs, a sweep's
      ``tiny = true``): run settings of :data:`SETTINGS` and ``"options"``, a dict of the entry's options, checked
      (names and values) when the entry is built; an
      option in it that an inference does not read (``inference_options``) is left out for that inference
      (:meth:`unread_options`), so a tiny size may be one inference's own (spike-slab's NUTS tree depth);
    * ``from_file(path, seed, **options) -> Dataset``: optional reader of a user's data file (``--data``);
    * ``artifacts(result, dataset, out_dir)``: optional extra files (plots ...) written into the run directory
      before it is published;
    * ``list_options``: number options that may also be given as a list (one value per input column);
    * ``text_options``: options whose values are always text (column names): ``-o outcome=true`` keeps the text;
    * ``float_options``: options whose values are floats though their default is not a float (``None`` for a value
      derived from the data); with the options whose default is a float (:meth:`float_option_names`), a sweep
      spells their integers as floats (``lam = 1`` and ``1.0``: one value, one run directory);
    * ``data_options``: option -> the data sources that read it (``"simulator"``, ``"file"`` for ``--data``, or a
      shipped dataset's name). Unlisted options are model options that apply whatever the data. A listed option
      given with another source is an error, since the run would ignore it (``n`` with ``--dataset boston``),
      and a loader is called only with the options its source reads (a simulator never sees ``--data``'s column
      names).
    * ``settings``: inference -> the engine settings of :data:`SETTINGS` it reads (an inference not listed reads
      them all). The others are left out of the recorded config (so ``config.toml`` says what ran, and a sweep axis
      over them is refused for that inference), and the runner names them when they were given (a note from
      ``pyrozoo run``, a ``UserWarning`` from ``run_model``: :func:`pyrozoo.runner.unapplied_settings`).
    * ``inference_options``: option -> the inferences that read it (unlisted options: all of them). Given with
      another inference it is an error, as for ``data_options`` (gp's type-II starting values under ``nuts``).
    * ``check_options(config)``: optional family checks of the config's options together and with its settings
      (an option that another one makes unused, a warm-up as long as the run), raising :class:`PyrozooError`; run
      last in :meth:`check_config`, so before any data are loaded and for every cell of a sweep.
    * ``log_likelihood_size(dataset) -> int``: optional, the number of pointwise log-likelihood values per draw the
      fit gives on ``dataset``, when it is not one per observed value (:func:`observed_values`, the default):
      regime-scm's log-likelihood is joint over a row's variables, one value per row. ``run_model`` sizes the
      log-likelihood with it before the fit (:func:`pyrozoo.runner.check_run_size`); the fit passes the same count
      to :func:`~pyrozoo.inference.assemble.assemble_result` (``log_likelihood_size``).
    * ``check_data(dataset, config)``: optional, the model's own refusal of data it cannot fit whatever the run's
      settings (the exact GP's N x N matrices that exceed the device's memory), raising :class:`PyrozooError`;
      ``run_model`` calls it once the data are loaded, before the generic pointwise-size refusal
      (:func:`pyrozoo.runner.check_run_size`), so the error that no flag of the run can fix comes first.
    * ``option_notes``: option -> a short condition ``pyrozoo list`` prints after its readers, for what the tables
      above cannot say (regime-scm's enum reads ``hidden`` only with ``mechanism='mlp'``, which ``check_options``
      enforces). For an option whose default is ``None``, a note beginning ``"default V; "`` (or just ``"default V"``)
      says the value it takes when not given: ``pyrozoo list`` shows V as its default and the rest as the condition
      (blr's ``a0``: ``"default 2.0; only with noise=0"``).
    * ``canonical_options``: option -> a function giving the one spelling of a value the model accepts in several
      (effect-curve's ``interactions = true`` is ``"linear"``, its default); a sweep's resume compares options
      through it (:meth:`canonical`), so a run made with one spelling is the same run as one with the other.
    """

    name: str
    model: Callable[..., Any]
    simulate: Callable[..., Dataset]
    fit: Callable[[Dataset, RunConfig], Result]
    inferences: tuple[str, ...]
    metrics: Callable[[Result, Dataset], dict[str, float]] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    datasets: Mapping[str, Callable[..., Dataset]] = field(default_factory=dict)
    tiny: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    artifacts: Callable[[Result, Dataset, Path], None] | None = None
    from_file: Callable[..., Dataset] | None = None
    list_options: tuple[str, ...] = ()
    data_options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    text_options: tuple[str, ...] = ()
    float_options: tuple[str, ...] = ()
    settings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    inference_options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    check_options: Callable[[RunConfig], None] | None = None
    option_notes: Mapping[str, str] = field(default_factory=dict)
    log_likelihood_size: Callable[[Dataset], int] | None = None
    canonical_options: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    check_data: Callable[[Dataset, RunConfig], None] | None = None

    def __post_init__(self) -> None:
        if self.check_data is not None and not callable(self.check_data):
            raise PyrozooError(f"check_data of {self.name}: expected a function of the dataset and config (or None), "
                               f"got {self.check_data!r}")
        if self.log_likelihood_size is not None and not callable(self.log_likelihood_size):
            raise PyrozooError(f"log_likelihood_size of {self.name}: expected a function of the dataset (or None), "
                               f"got {self.log_likelihood_size!r}")
        if not isinstance(self.fit, LabelledFit):
            self.fit = LabelledFit(self.fit, self.name)
        elif getattr(self.fit, "entry", "") != self.name:  # another entry's fit: a wrapper under this name
            self.fit = LabelledFit(self.fit.fit, self.name)
        if not isinstance(self.datasets, Mapping):
            raise PyrozooError(f"datasets of {self.name}: expected a dict of dataset name -> loader, got "
                               f"{self.datasets!r}")
        reserved = [d for d in self.datasets if d in RESERVED_SOURCES]
        if reserved:  # data_options could no longer tell the shipped dataset from the simulator or --data
            raise PyrozooError(f"datasets of {self.name}: {', '.join(map(repr, reserved))} "
                               f"{'is a reserved data-source name' if len(reserved) == 1 else 'are reserved names'} "
                               f"({' and '.join(map(repr, RESERVED_SOURCES))} name the simulator and --data files in "
                               f"data_options); give the dataset another name")
        # an author's slip here would otherwise be read wrongly, not refused: a string where a tuple belongs is read
        # as its characters (``inferences=("nuts")`` offers "n", "u", "t", "s"), a misspelt key restricts nothing,
        # and a slip in ``settings`` makes config.toml drop settings that ran (and the CLI say they did not apply)
        self._names(f"inferences of {self.name}", self.inferences, None, "inference", empty=False)
        options = tuple(self.options)
        for field_name in ("list_options", "text_options", "float_options"):
            self._names(f"{field_name} of {self.name}", getattr(self, field_name), options, "option")
        self._names(f"canonical_options of {self.name}", tuple(self.canonical_options), options, "option")
        if not all(callable(f) for f in self.canonical_options.values()):
            raise PyrozooError(f"canonical_options of {self.name}: expected a dict of option -> function, got "
                               f"{dict(self.canonical_options)!r}")
        sources = ("simulator", *(("file",) if self.from_file is not None else ()), *self.datasets)
        for field_name, keys, key_kind, values, value_kind, empty in (
                ("settings", self.inferences, "inference", SETTINGS, "setting", True),
                ("inference_options", options, "option", self.inferences, "inference", False),
                ("data_options", options, "option", sources, "data source", False)):
            mapping = getattr(self, field_name)
            where = f"{field_name} of {self.name}"
            if not isinstance(mapping, Mapping):
                raise PyrozooError(f"{where}: expected a dict of {key_kind} -> {value_kind} names, got {mapping!r}")
            self._names(where, tuple(mapping), keys, key_kind)
            for key, names in mapping.items():
                self._names(f"{where}: {key!r}", names, values, value_kind, empty=empty)
        # tiny's slips surfaced only in a tiny sweep, which blamed the user's sweep file, or as a bare TypeError
        where = f"tiny of {self.name}"
        if not isinstance(self.tiny, Mapping):
            raise PyrozooError(f"{where}: expected a dict of run settings and 'options', got {self.tiny!r}")
        self._names(where, tuple(self.tiny), (*SETTINGS, "options"), "key")
        tiny_options = self.tiny.get("options", {})
        if not isinstance(tiny_options, Mapping):
            raise PyrozooError(f"{where}: 'options': expected a dict of option -> value, got {tiny_options!r}")
        self._names(f"{where}: 'options'", tuple(tiny_options), options, "option")
        try:  # the values as a config holding them would check them (num_samples >= 1, an option's default's type)
            RunConfig(model=self.name, **{k: v for k, v in self.tiny.items() if k != "options"}).validate()
            check_option_types("option", tiny_options, self.options, self.list_options)
        except PyrozooError as exc:
            raise PyrozooError(f"{where}: {exc}") from None

    @staticmethod
    def _names(where: str, names: Any, known: tuple[str, ...] | None, kind: str, *, empty: bool = True) -> None:
        """Refuse ``names`` unless a tuple or list of non-empty strings (not one string, whose characters would be
        taken for the names), each among ``known`` (``None``: any), and not empty unless ``empty``."""
        if (isinstance(names, str) or not isinstance(names, (tuple, list)) or not (empty or names)
                or not all(isinstance(n, str) and n for n in names)):
            raise PyrozooError(f"{where}: expected a {'' if empty else 'non-empty '}tuple of {kind} names, got "
                               f"{names!r}")
        unknown = [n for n in names if known is not None and n not in known]
        if unknown:
            raise PyrozooError(f"{where}: unknown {kind}(s) {', '.join(map(repr, unknown))}; expected one of "
                               f"{', '.join(known) or '(none)'}")

    def canonical(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with each value of :attr:`canonical_options` in its one spelling; a value its function
        refuses is kept as it is (the model's own checks name it)."""
        out = dict(options)
        for key, spelling in self.canonical_options.items():
            if key in out:
                try:
                    out[key] = spelling(out[key])
                except PyrozooError:
                    pass
        return out

    def check_config(self, config: RunConfig, *, family: bool = True, source: str | None = None) -> RunConfig:
        """Validate ``config`` against this entry; fill the default inference. Raises before any work.
        ``family=False`` leaves out the entry's ``check_options`` (a sweep runs it itself, to count the grid's
        cells it refuses). ``source``: where the data came from (see :func:`data_source`; ``"python"`` for a
        dataset built in Python) when a fit is given a dataset directly, in place of the one ``config.data`` and
        ``config.dataset`` name, for the options that source would ignore."""
        config.validate()
        if config.inference is None:
            config.inference = self.inferences[0]
        if config.inference not in self.inferences:
            raise PyrozooError(
                f"inference: {self.name} supports {', '.join(self.inferences)}; got {config.inference!r}"
            )
        check_keys(f"options for {self.name}", config.options, self.options)
        config.options = check_option_types(f"option of {self.name}", config.options, self.options, self.list_options,
                                            self.float_options)
        if config.data is not None and config.dataset is not None:
            raise PyrozooError("data: give either a data file or a shipped dataset name, not both")
        if config.data is not None and self.from_file is None:
            raise PyrozooError(f"data: {self.name} does not read data files; use --dataset or its simulator")
        if config.data is not None and Path(config.data).is_dir():
            raise PyrozooError(f"data: {config.data} is a directory; expected a data file (CSV)")
        if config.data is not None and not Path(config.data).is_file():
            raise PyrozooError(f"data: file {config.data} does not exist")
        if config.dataset is not None and config.dataset not in self.datasets:
            known = ", ".join(self.datasets) or "none (simulated data only)"
            raise PyrozooError(f"dataset: {self.name} knows {known}; got {config.dataset!r}")
        ignored = self.unread_options(config.options, config.inference)
        if ignored:
            raise no_effect_error(ignored, self.inference_options,
                                  lambda readers: f"{self.name}'s {or_join(readers)}", config.inference)
        source = source or data_source(config.data, config.dataset)
        unused = self.unused_options(config.options, source)
        if unused:
            raise no_effect_error(unused, self.data_options,
                                  lambda readers: or_join(describe_source(s) for s in readers), describe_source(source))
        if family and self.check_options is not None:
            self.check_options(config)
        return config

    def pointwise_sizes(self, dataset: Dataset) -> tuple[int, int]:
        """(log-likelihood values, posterior predictive values) per draw on ``dataset``: ``log_likelihood_size``
        where the entry gives one (else every observed value), and every observed value."""
        values = observed_values(dataset)
        if self.log_likelihood_size is None:
            return values, values
        size = self.log_likelihood_size(dataset)
        if isinstance(size, bool) or not isinstance(size, (int, numbers.Integral)) or size < 0:
            raise PyrozooError(f"log_likelihood_size of {self.name}: expected an integer >= 0 (values per draw), got "
                               f"{size!r}")
        return int(size), values

    def float_option_names(self) -> frozenset[str]:
        """The options whose values are floats: those with a float default, and ``float_options``."""
        return frozenset(k for k, v in self.options.items() if k in self.float_options
                         or (isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral)))

    def unread_settings(self, inference: str) -> tuple[str, ...]:
        """The engine settings (:data:`SETTINGS`) that ``inference`` does not read."""
        reads = self.settings.get(inference, SETTINGS)
        return tuple(k for k in SETTINGS if k not in reads)

    def without_unread_settings(self, config: Mapping[str, Any], inference: str) -> dict[str, Any]:
        """``config`` (a plain dict) without the settings ``inference`` does not read."""
        unread = self.unread_settings(inference)
        return {k: v for k, v in config.items() if k not in unread}

    def recorded_config(self, config: RunConfig) -> dict[str, Any]:
        """``config`` as a plain dict for ``config.toml``, without the settings its inference does not read."""
        return self.without_unread_settings(config.to_dict(), config.inference)

    def unread_options(self, options: Mapping[str, Any], inference: str) -> list[str]:
        """The keys of ``options`` that ``inference`` does not read (``inference_options``)."""
        return [k for k in options if inference not in self.inference_options.get(k, self.inferences)]

    def unused_options(self, options: Mapping[str, Any], source: str) -> list[str]:
        """The keys of ``options`` that data source ``source`` (see :func:`data_source`) would ignore."""
        return [k for k in options if source not in self.data_options.get(k, (source,))]

    def merged_options(self, config: RunConfig) -> dict[str, Any]:
        """Entry defaults overridden by the config's options (``config.options`` holds only the options given)."""
        return {**self.options, **config.options}

    def load_data(self, config: RunConfig) -> Dataset:
        """The config's dataset: a data file, a shipped one by name, else the simulator with the run's seed, called
        with the options that source reads (``data_options``), and ``progress=config.progress`` when the loader
        names a ``progress`` parameter (one that fits, as effect-curve's, shows a progress bar unless
        ``--no-progress``). A loader that cannot take them, or returns no
        :class:`Dataset`, is a :class:`PyrozooError` naming it."""
        opts = self.merged_options(config)
        unread = set(self.unused_options(opts, data_source(config.data, config.dataset)))
        opts = {k: v for k, v in opts.items() if k not in unread}
        if config.data is not None:
            loader, args, what = self.from_file, (config.data, config.seed), "from_file"
        elif config.dataset is not None:
            loader, args, what = self.datasets[config.dataset], (config.seed,), f"the loader of {config.dataset!r}"
        else:
            loader, args, what = self.simulate, (config.seed,), "the simulator"
        try:
            signature = inspect.signature(loader)
        except (TypeError, ValueError):  # no signature to read (some builtins): the call will tell
            signature = None
        if signature is not None and "progress" not in opts and _declares(signature, "progress"):
            opts["progress"] = config.progress  # a loader that fits (effect-curve's estimator) shows a bar
        if signature is not None:
            try:  # the call's signature only: a TypeError raised inside the loader is its own
                signature.bind(*args, **opts)
            except TypeError as exc:
                required = _required_keywords(signature, len(args), opts)
                if required:  # it takes the options, but wants one the entry never passes
                    it = "keyword" if len(required) == 1 else "keywords"
                    raise PyrozooError(
                        f"{self.name}: {what} requires {it} {', '.join(map(repr, required))}, not declared in the "
                        f"entry's options for its data source (given: {', '.join(sorted(opts)) or 'none'}); "
                        f"declare it in options (with its default) or give it a default in {_qualname(loader)}"
                    ) from None
                raise PyrozooError(f"{self.name}: {what} does not take the entry's options ({exc}); every loader "
                                   f"is called with all of them that its data source reads, so it must accept "
                                   f"**options") from None
        dataset = loader(*args, **opts)
        if not isinstance(dataset, Dataset):
            raise PyrozooError(f"{self.name}: {what} ({_qualname(loader)}) returned {_type_name(dataset)}; expected "
                               f"a pyrozoo Dataset (pyrozoo.data.Dataset)")
        return dataset

    def compute_metrics(self, result: Result, dataset: Dataset) -> dict[str, Any]:
        """The entry's ``metrics(result, dataset)`` (``{}`` without one) as plain Python values, checked before
        anything is written: a mapping of str names to a real number (a Python or NumPy int, float or bool, a 0-d
        array or tensor; NaN and infinities are kept, and metrics.json writes them as null) or a list of strings
        (names, as plce's and effect-curve's ``controls``). Anything else (a vector, a string, a nested dict),
        which metrics.json could not save or the CLI not show, is a :class:`PyrozooError` naming the entry, the
        function, the key and what it returned."""
        if self.metrics is None:
            return {}
        metrics = self.metrics(result, dataset)
        where = f"{self.name}: metrics {_qualname(self.metrics)}"
        if not isinstance(metrics, Mapping):
            raise PyrozooError(f"{where} returned {_type_name(metrics)}; expected a dict of metric name -> number")
        out: dict[str, Any] = {}
        for key, value in metrics.items():
            if not isinstance(key, str):
                raise PyrozooError(f"{where} returned the key {key!r} ({_type_name(key)}); expected metric names "
                                   f"that are strings")
            if key in RESERVED_METRICS:  # run_model writes its own block there, which would replace this one
                raise PyrozooError(f"{where} returned the metric {key!r}, a name metrics.json keeps for "
                                   f"{RESERVED_METRICS[key]}; rename it")
            number = metric_number(value)
            if key == "wall_time" and number != getattr(result, "wall_time", number):
                # refused here, before the run is saved, not by save_run after the work (it keeps its own)
                raise PyrozooError(f"{where} returned the metric 'wall_time' = {number!r}, but metrics.json keeps "
                                   f"the run's own wall_time there ({result.wall_time!r}); give the metric "
                                   f"another name (e.g. total_time) or the run's value")
            if number is not None:
                out[key] = number
            elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                out[key] = list(value)
            else:
                raise PyrozooError(f"{where} returned {_described(value)} for {key!r}; expected a number (a Python "
                                   f"or NumPy int, float or bool, a 0-d array or tensor) or a list of strings, "
                                   f"which metrics.json can save (a vector is one metric per entry: name_0, "
                                   f"name_1, ...)")
        return out


def observed_values(dataset: Dataset) -> int:
    """The number of observed values in ``dataset`` (every element of every ``observed`` array): per draw, the size
    of the posterior predictive and, for a model whose log-likelihood is one value per observed value, of the
    pointwise log-likelihood."""
    return sum(int(v.numel()) if isinstance(v, torch.Tensor) else int(np.size(v)) for v in dataset.observed.values())


def _declares(signature: inspect.Signature, name: str) -> bool:
    """Whether ``signature`` names the keyword parameter ``name`` (not merely **kwargs, which would pass it on)."""
    param = signature.parameters.get(name)
    return param is not None and param.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                 inspect.Parameter.POSITIONAL_OR_KEYWORD)


class LabelledFit:
    """A zoo entry's ``fit`` followed by :func:`~pyrozoo.inference.result.label_observations` with the dataset's
    ``meta["rows"]`` (the original row labels of the observations, set by loaders that shuffle or split the rows;
    labels of the ``obs_id`` axis, or a mapping ``{axis: labels}`` for a model whose observations lie along other
    axes, as agnostic's ``target_id`` and ``protected_id``): the one place where every model's observation
    coordinates get them, and where every path to a result (``pyrozoo run``, sweeps, ``entry.fit`` from Python)
    passes: a return value that is not a :class:`Result`, or rows with no such axis to put them on (an observation
    plate named otherwise), is a :class:`PyrozooError` naming the
    entry (``entry``) and the fit. It is also where ``config.device`` is resolved (:func:`resolve_device`) before
    the fit starts, for every entry alike: ``"cuda"`` without CUDA, or an unknown name, is a PyrozooError before any
    work; the dataset is moved to the device, and the fit sees (and its result records) the resolved device, so
    ``"auto"`` reads ``"cpu"`` or ``"cuda"``. Where the loader standardized the response, y_std = (y - m) / s, and
    says so in the dataset's ``meta["response_shift"]`` (m) and ``meta["response_scale"]`` (s) (and
    ``meta["response_site"]`` when the observed site is not ``y``), it is also the one place where the result's
    log-likelihood is put into the data's own units, log p(y) = log p(y_std) - log s, and m and s are recorded in
    its attrs (:func:`~pyrozoo.inference.result.response_in_data_units`): ``az.compare`` across families then
    compares densities of the same numbers. A module-level class, so that an entry pickles; it looks like the
    function it wraps (name, docstring)."""

    def __init__(self, fit: Callable[[Dataset, RunConfig], Result], entry: str = "") -> None:
        self.fit = fit
        self.entry = entry
        functools.update_wrapper(self, fit)

    def __call__(self, dataset: Dataset, config: RunConfig) -> Result:
        if isinstance(config, RunConfig):  # fits ran where their data were and recorded the device as asked
            device = resolve_device(config.device)
            config = dataclasses.replace(config, device=str(device))
            if isinstance(dataset, Dataset):
                dataset = dataset.to(device)
        meta = dataset.meta if isinstance(dataset, Dataset) else {}
        response = [k for k in RESPONSE_ATTRS if k in meta]
        if response and len(response) < len(RESPONSE_ATTRS):  # before the fit, not after it
            missing = [k for k in RESPONSE_ATTRS if k not in meta]
            raise PyrozooError(f"{getattr(self, 'entry', '') or 'model'}: the dataset's meta has {response[0]!r} "
                               f"but not {missing[0]!r}; expected both (y = response_shift + response_scale * y_std, "
                               f"for a loader that standardized y) or neither")
        if response:
            try:
                response_map(*(meta[k] for k in RESPONSE_ATTRS))
            except PyrozooError as exc:  # say where the value came from
                raise PyrozooError(f"{getattr(self, 'entry', '') or 'model'}: the dataset's meta: {exc}") from None
        result = self.fit(dataset, config)
        where = f"{getattr(self, 'entry', '') or 'model'}: fit {_qualname(self.fit)}"  # '': pickled before it had one
        if not isinstance(result, Result):  # the runner would fail later on, in code that is not the author's
            raise PyrozooError(f"{where} returned {_type_name(result)}; expected a pyrozoo Result "
                               f"(pyrozoo.inference.Result, e.g. from assemble_result or the shared engines)")
        if response:  # y standardized by the loader: the log-likelihood goes into y's own units
            response_in_data_units(result, *(meta[k] for k in RESPONSE_ATTRS), site=meta.get("response_site", "y"))
        rows = meta.get("rows")
        if rows is None:
            return result
        # labels of obs_id, or {axis: labels} for a model with other observation axes (agnostic's target_id ...)
        for dim, labels in (rows.items() if isinstance(rows, Mapping) else [("obs_id", rows)]):
            if observation_count(result, dim) is None:  # the labels would be dropped: az.loo would name positions
                observed = ", ".join(f"{k} ({', '.join(result.dims.get(k) or ['no named axis'])})"
                                     for k in result.observed_data) or "none"
                key = f"meta['rows'][{dim!r}]" if isinstance(rows, Mapping) else "meta['rows']"
                raise PyrozooError(f"{where}: the dataset's {key} ({len(labels)} row labels) need an {dim!r} axis "
                                   f"to label, and the result has none (observed sites and their axes: "
                                   f"{observed}); name the model's observation plate {dim} "
                                   f"(pyro.plate(\"{dim}\", n))")
            label_observations(result, labels, dim)
        return result


def _qualname(function: Any) -> str:
    """``module.name`` of a function, for messages."""
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None) or repr(function)
    module = getattr(function, "__module__", None)
    return f"{module}.{name}" if module else name


def _type_name(value: Any) -> str:
    """``None`` or ``a dict`` / ``an InferenceData`` (module-qualified outside builtins), for messages."""
    if value is None:
        return "None"
    cls = type(value)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


# metrics.json keys that run_model and save_run write themselves (evaluation.diagnostics.CONVERGENCE_KEY; the run's
# bookkeeping), so no entry's metric may take them. wall_time, which save_run writes too, is not among them: the
# shipped spike-slab and regime-scm report it as a metric, the same value (compute_metrics refuses a different one,
# as save_run does).
RESERVED_METRICS = {
    "convergence": "the sampler's convergence figures (pyrozoo report reads them)",
    "inference": "the engine label of what ran",
    "inference_requested": "the inference config.toml names",
    "seed": "the run's seed",
    "pyrozoo_version": "the pyrozoo version that wrote the run",
    "pyro_version": "the pyro version the run was made with",
    "torch_version": "the torch version the run was made with",
    "numpy_version": "the numpy version the run was made with",
    "python_version": "the Python version the run was made with",
}


def metric_number(value: Any) -> bool | int | float | None:
    """``value`` as a Python bool, int or float when it is one real number (a Python or NumPy bool, int or float, a
    0-d NumPy array or torch tensor of such a dtype), else ``None``."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.is_complex():
            return None
        return value.item()
    if isinstance(value, (np.ndarray, np.generic)):
        kind = np.asarray(value).dtype.kind
        if np.ndim(value) != 0 or kind not in "biuf":
            return None
        # by kind, not .item(): a longdouble's item() is still a longdouble, which json cannot write
        return {"b": bool, "i": int, "u": int, "f": float}[kind](value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return None


def _described(value: Any) -> str:
    """``a numpy.ndarray of shape (2,) (array([1., 2.]))`` / ``a str ('abc')``: a value's type, shape and a short
    repr, for messages."""
    import reprlib

    shape = getattr(value, "shape", None)
    shaped = f" of shape {tuple(shape)}" if shape is not None and len(shape) else ""
    return f"{_type_name(value)}{shaped} ({reprlib.repr(value)})" if value is not None else "None"


def _required_keywords(signature: inspect.Signature, n_args: int, given: Mapping[str, Any]) -> list[str]:
    """Parameters of ``signature`` without a default that neither the ``n_args`` positional arguments nor the
    keywords ``given`` fill."""
    missing = []
    for i, p in enumerate(signature.parameters.values()):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty or p.name in given:
            continue
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and i < n_args:
            continue
        missing.append(p.name)
    return missing


def checked_config(name: str, config: RunConfig, *, family: bool = True) -> RunConfig:
    """``config`` after the checks :func:`~pyrozoo.runner.run_model` makes (inference among entry ``name``'s, known
    options of the right types, data source), for a family's fit function called directly from Python, where a
    misspelt or missing inference would otherwise fall through to another engine. Idempotent.

    ``config.model`` must be ``name``, or an entry whose ``fit`` is the same function as ``name``'s (a variant
    registered over a shared fit), whose own declarations the config is then checked against: a config naming any
    other model would run ``name``'s fit and record the other model (a copied module whose fit still checks against
    the original's name refuses the copy's options).

    ``family=False`` leaves out the entry's ``check_options``, for a fit that makes the family's checks itself
    against the dataset it was given (agnostic's, against the dataset's network)."""
    entry = get(name)
    other = getattr(config, "model", name)
    if other == name:
        return entry.check_config(config, family=family)
    shared = other in names() and _unwrapped(get(other).fit) is _unwrapped(entry.fit)
    if not shared:
        # the function that called checked_config is the code to edit (a copy of a family's fit, say), not the entry's
        frame = inspect.currentframe()
        caller = _caller_name(frame.f_back) if frame and frame.f_back else _qualname(_unwrapped(entry.fit))
        del frame
        raise PyrozooError(
            f"model: {caller} checks its config against entry {name!r} "
            f"(checked_config({name!r}, config)), but the config names model {other!r}; pass a RunConfig with "
            f"model={name!r}, or, in a fit copied from {name!r}'s module, rename the checked_config call to the "
            f"copy's own name")
    return get(other).check_config(config, family=family)


def _caller_name(frame: types.FrameType) -> str:
    """``module.qualname`` of the function running in ``frame``, for messages."""
    code = frame.f_code
    return f"{frame.f_globals.get('__name__', '?')}.{getattr(code, 'co_qualname', code.co_name)}"


def _unwrapped(fit: Callable[..., Any]) -> Callable[..., Any]:
    """The function an entry's ``fit`` wraps (:class:`LabelledFit`)."""
    return fit.fit if isinstance(fit, LabelledFit) else fit


def data_source(data: Any, dataset: str | None) -> str:
    """Where a run's data come from: ``"file"`` (a ``--data`` path), a shipped dataset's name, or ``"simulator"``."""
    if data is not None:
        return "file"
    return dataset if dataset is not None else "simulator"


def describe_source(source: str) -> str:
    """A data source in words, for messages."""
    return {"simulator": "the simulated data", "file": "a data file (--data)",
            "python": "a dataset built in Python"}.get(source, f"dataset {source!r}")


def no_effect_error(keys: list[str], readers_of: Mapping[str, Iterable[str]],
                    describe: Callable[[tuple[str, ...]], str], given: str) -> PyrozooError:
    """``options: K apply only to R; with G they would have no effect (remove them)``, the ``keys`` grouped by
    who reads them (``readers_of[key]``, put in words by ``describe``): the error for options that data source or
    inference ``given`` would ignore."""
    by_readers: dict[tuple[str, ...], list[str]] = {}
    for k in keys:
        by_readers.setdefault(tuple(readers_of[k]), []).append(k)
    parts = [f"{', '.join(group)} {'applies' if len(group) == 1 else 'apply'} only to {describe(readers)}"
             for readers, group in by_readers.items()]
    it, them = ("it", "it") if len(keys) == 1 else ("they", "them")
    error = PyrozooError(f"options: {'; '.join(parts)}; with {given} {it} would have no effect (remove {them})")
    error.names = tuple(keys)  # the options it is about: `run --config` names the file for those that came from it
    return error


def or_join(words: Iterable[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


_REGISTRY: dict[str, Callable[[], ZooModel]] = {}
_LOADED = False


class NameClash(PyrozooError):
    """Two factories registered under one name (a copied model module that kept the original's ``@register``)."""


def register(name: str) -> Callable[[Callable[[], ZooModel]], Callable[[], ZooModel]]:
    """Decorator registering a factory ``() -> ZooModel`` under ``name``; a name another factory holds already is a
    :class:`NameClash` naming both modules."""

    def deco(factory: Callable[[], ZooModel]) -> Callable[[], ZooModel]:
        first = _REGISTRY.get(name)
        same = first is not None and (first.__module__, first.__qualname__) == (factory.__module__,
                                                                                factory.__qualname__)
        if first is not None and first is not factory and not same:  # same: a module imported again
            raise NameClash(f"model name {name!r} is registered twice: by {_origin(first)} and by "
                            f"{_origin(factory)}; give one of them its own name in @register(...)")
        _REGISTRY[name] = factory
        return factory

    return deco


def _origin(factory: Callable[..., Any]) -> str:
    """``module (file, line N)`` of a registered factory (the line of its decorator), for messages."""
    module = getattr(factory, "__module__", None) or "an unknown module"
    code = getattr(factory, "__code__", None)
    if code is None:
        return f"{module}.{getattr(factory, '__qualname__', repr(factory))}"
    return f"{module} ({code.co_filename}, line {code.co_firstlineno})"


def _where(exc: BaseException, module: str) -> str:
    """``file, line N`` of the error: a syntax error's own position, else the innermost traceback frame in
    ``module``'s own file (not in a library it called), else the innermost frame."""
    if isinstance(exc, SyntaxError):
        return f"{exc.filename}, line {exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if Path(f.filename).stem == module.rsplit(".", 1)[-1]]
    frame = (own or frames or [None])[-1]
    return f"{frame.filename}, line {frame.lineno}" if frame is not None else "unknown place"


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    import pyrozoo.models as models

    for info in pkgutil.iter_modules(models.__path__):
        module = f"{models.__name__}.{info.name}"
        try:
            importlib.import_module(module)
        except NameClash:  # says which modules clash: blaming the one imported second would point at the wrong one
            raise
        except Exception as exc:  # one broken model module must say where, not end every command in a traceback
            raise PyrozooError(f"model module {module} failed to import ({type(exc).__name__}: {exc}; at "
                               f"{_where(exc, module)}); fix it, or move it out of pyrozoo/models/") from exc
    _LOADED = True


def names() -> list[str]:
    """Registered entry names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> ZooModel:
    """The entry registered as ``name``; an unknown name is a :class:`PyrozooError` listing the known ones."""
    _load_all()
    if name not in _REGISTRY:
        raise PyrozooError(f"model: unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    entry = _REGISTRY[name]()
    entry.name = name
    if isinstance(entry.fit, LabelledFit) and getattr(entry.fit, "entry", "") != name:
        entry.fit = LabelledFit(entry.fit.fit, name)
    return entry
