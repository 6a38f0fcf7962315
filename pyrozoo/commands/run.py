"""``pyrozoo run MODEL``: fit one model and write a run directory."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyrozoo.config import RunConfig, expand_data_home, read_toml, relative_to_file, tomllib
from pyrozoo.errors import PyrozooError
from pyrozoo.validation import expand_home

SUMMARY_ROWS = 20  # rows of the summary table `pyrozoo run` prints (`pyrozoo diagnose` prints more)
# flag -> RunConfig field, for the shared settings (flag names follow Pyro's examples)
ALIASES = {"steps": ("--num-steps",), "lr": ("--learning-rate",)}  # the other spellings Pyro's examples use
FLAGS = {
    "inference": ("--inference", str, "engine (default: the model's first)"),
    "num_samples": ("--num-samples", int, "posterior draws per chain"),
    "warmup_steps": ("--warmup-steps", int, "MCMC/Gibbs warmup iterations"),
    "num_chains": ("--num-chains", int, "chains"),
    "steps": ("--steps", int, "SVI/optimizer steps"),
    "lr": ("--lr", float, "learning rate"),
    "seed": ("--seed", int, "random seed"),
    "device": ("--device", str, "auto | cpu | cuda | cuda:N"),
    "dataset": ("--dataset", str, "a shipped dataset instead of the simulator"),
    "data": ("--data", str, "a data file (CSV) instead of the simulator; columns chosen by model options"),
}

BOOL_FLAGS = ("jit", "progress", "posterior_predictive", "log_likelihood")  # --X / --no-X, RunConfig's booleans


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="fit a zoo model and save the run")
    p.add_argument("model", nargs="?", help="model name (see `pyrozoo list`); may come from --config")
    for dest, (flag, typ, help_) in FLAGS.items():
        p.add_argument(flag, *ALIASES.get(dest, ()), dest=dest, type=typ, default=None, help=help_)
    p.add_argument("--config", help="TOML file with run settings and an [options] table (a relative data path in "
                   "it is relative to the file)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="model option (repeatable), e.g. -o n=1000")
    p.add_argument("--out", help="run directory (default: runs/MODEL/TIMESTAMP-INFERENCE-seedN)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    # --no-X too: a flag overrides the --config file in both directions (jit = true there, --no-jit here)
    p.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None, help="jit-compile NUTS/HMC")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bars")
    p.add_argument("--posterior-predictive", action=argparse.BooleanOptionalAction, default=None,
                   help="add a posterior_predictive group to idata.nc")
    p.add_argument("--log-likelihood", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the pointwise log_likelihood group (default); --no-log-likelihood leaves it out, "
                        "for runs too large for it (az.loo/az.waic will not work on the run)")
    p.set_defaults(handler=handle)


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as a TOML value (number, bool, string, array), else as a plain string. KEY
    (surrounding spaces dropped) must not be empty."""
    if "=" not in text:
        raise PyrozooError(f"--option: expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise PyrozooError(f"--option: expected KEY=VALUE with a non-empty KEY, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def resolve_file_data(written: Any, config_path: str | Path) -> Any:
    """The ``data`` path of the config file ``config_path`` as the run reads it: a relative path is taken relative
    to the config file's directory (as pyproject.toml's or Cargo.toml's paths are), ``~`` expanded, an absolute one
    unchanged; anything else (a number, a list) is returned for :meth:`RunConfig.validate` to refuse. A file that
    does not exist is a :class:`PyrozooError` naming the config file, the path as written and as resolved. A config
    read from a pipe (``--config <(...)``, ``/dev/stdin``) has no directory of its own: its relative paths are taken
    from the current directory (``/dev/fd`` holds no data files)."""
    if not isinstance(written, str) or not written.strip():
        return written
    piped = not Path(config_path).is_file()
    folder = os.getcwd() if piped else os.path.normpath(Path(config_path).absolute().parent)
    path = expand_home("data", written, what="a data file path", base=folder)  # ~x.csv beside the file: kept
    resolved_text = os.path.normpath(path) if path.is_absolute() else relative_to_file(path, folder)
    if not Path(resolved_text).exists():
        where = "the current directory (the config was read from a pipe)" if piped else \
            f"the config file's directory {folder}"
        how = "" if path.is_absolute() else f", taken relative to {where}"
        raise PyrozooError(f"data: {config_path} names the data file {written!r}{how}, but {resolved_text} does not "
                           f"exist")
    return resolved_text


def absolute_data_path(written: Any) -> Any:
    """A ``--data`` path as the run records it: a relative one is read from the current directory and made absolute
    (``~`` expanded), so that the run's config.toml reruns with ``--config`` from any directory; ``~/d.csv`` (a
    ``~`` the shell left, as in ``--data=~/d.csv``) is returned expanded (it was returned as written, and refused as
    a missing file); any other absolute path, ``None`` or anything else (left for :meth:`RunConfig.validate` to
    refuse) is returned unchanged."""
    if isinstance(written, str) and written.strip():
        path = expand_data_home(written)  # a ~user naming no user: refused here
        return path if os.path.isabs(path) else os.path.abspath(path)
    return written


def config_from_args(args: argparse.Namespace, file_data: dict[str, Any],
                     note: Callable[[str], None] | None = None) -> RunConfig:
    """The run's config: ``file_data`` (the ``--config`` file as read, or empty), then the flags over it. The
    file's ``data`` path is relative to the file's directory, ``--data``'s to the current one. A data-source flag
    replaces the file's data source whichever it is: ``--dataset`` drops the file's ``data``, ``--data`` its
    ``dataset`` (as any other flag replaces the file's value), and the file's ``[options]`` that only the replaced
    source reads (``data_options``: ``n`` of a simulated-data file under ``--dataset``) go with it, each named in a
    note passed to ``note`` (default: printed as ``note: ...``); such options given with ``-o`` are still refused."""
    data: dict[str, Any] = dict(file_data)
    for flag, replaced in (("dataset", "data"), ("data", "dataset")):
        if getattr(args, flag) is not None:
            data.pop(replaced, None)
    dropped = _replaced_source_options(args, file_data)
    if dropped:
        data["options"] = {k: v for k, v in data["options"].items() if k not in dropped}
        from pyrozoo.registry import data_source as registry_data_source
        from pyrozoo.registry import describe_source

        flag = "--data" if args.data is not None else "--dataset"
        source = describe_source(_file_source(file_data))
        replacing = describe_source(registry_data_source(args.data, args.dataset))
        text = (f"{args.config}: {flag} replaced the file's data source ({source}), so its option(s) "
                f"{', '.join(dropped)}, which {replacing} does not read, are dropped")
        (note or (lambda line: print(f"note: {line}")))(text)
    if args.config and "data" in data and args.data is None:  # --data replaces the file's path unread
        data["data"] = resolve_file_data(data["data"], args.config)
    if args.model is not None:
        if "model" in data and data["model"] != args.model:
            raise PyrozooError(f"model: the command line says {args.model!r} but {args.config} says {data['model']!r}")
        data["model"] = args.model
    if "model" not in data:
        raise PyrozooError("model: name a model (`pyrozoo list` shows them) or give a --config with model = ...")
    for dest in [*FLAGS, *BOOL_FLAGS]:
        value = getattr(args, dest)
        if value is not None:
            data[dest] = value
    if "data" in data:  # --data is read from the current directory, recorded resolved
        data["data"] = absolute_data_path(data["data"])
    options = data.get("options", {})
    if not isinstance(options, dict):  # only the file can give options that are not a table
        raise PyrozooError(f"{args.config}: options: expected a table of model options ([options]), got {options!r}")
    options = dict(options)
    given = [parse_option(o) for o in args.option]
    if given:
        from pyrozoo import registry

        try:
            text_options = registry.get(data["model"]).text_options  # an unknown model is the usual one-line error
        except PyrozooError as exc:  # a model named by the file: the error names the file
            name_file(exc, args.config, file_keys(args, file_data), file_options(args, file_data))
            raise
        for text, (key, value) in zip(args.option, given, strict=True):
            # column names take the text as typed: -o outcome=true names the column "true", not the boolean
            options[key] = (text.split("=", 1)[1].strip() if key in text_options
                            and isinstance(value, (bool, int, float)) else value)
    data["options"] = options
    return RunConfig.from_dict(data, source=args.config or "config")


def _file_source(file_data: dict[str, Any]) -> str:
    """The data source the ``--config`` file names (see :func:`pyrozoo.registry.data_source`)."""
    from pyrozoo.registry import data_source

    return data_source(file_data.get("data"), file_data.get("dataset"))


def _replaced_source_options(args: argparse.Namespace, file_data: dict[str, Any]) -> list[str]:
    """The file's ``[options]`` that only its own data source reads, where a ``--data``/``--dataset`` flag replaced
    that source by another (which ignores them); an option ``-o`` gives again is the command line's, not listed.
    Empty without a data-source flag, without options in the file, or where the model is not known (its own
    error comes later)."""
    from pyrozoo import registry

    options = file_data.get("options")
    if (args.data is None) == (args.dataset is None) or not isinstance(options, dict) or not options:
        return []  # no data-source flag, or both (which the entry refuses)
    new = registry.data_source(args.data, args.dataset)
    old = _file_source(file_data)
    model = args.model if args.model is not None else file_data.get("model")
    if new == old or not isinstance(model, str):
        return []
    try:
        entry = registry.get(model)
    except PyrozooError:  # an unknown model: the usual error, later
        return []
    if (args.dataset is not None and args.dataset not in entry.datasets) or (
            args.data is not None and entry.from_file is None):
        return []  # a source the entry does not have: its own error comes later, with nothing said dropped
    readers, kept = entry.data_options, file_options(args, file_data)
    return [k for k in options if k in kept and k in readers and old in readers[k] and new not in readers[k]]


def file_options(args: argparse.Namespace, file_data: dict[str, Any]) -> set[str]:
    """The option names whose values in the run's config are the ``--config`` file's: its ``[options]`` that no
    ``--option`` replaced."""
    options = file_data.get("options")
    if not isinstance(options, dict):
        return set()
    replaced = {o.split("=", 1)[0].strip() for o in args.option}
    return {k for k in options if k not in replaced}


def file_keys(args: argparse.Namespace, file_data: dict[str, Any]) -> set[str]:
    """The names whose values in the run's config are the ``--config`` file's: its settings that no flag replaced,
    its ``[options]`` that no ``--option`` replaced (by the option's name, as the errors about an option begin), and
    ``options`` itself where every option came from the file (the errors about the options together)."""
    flags = {dest for dest in [*FLAGS, *BOOL_FLAGS] if getattr(args, dest, None) is not None}
    if flags & {"data", "dataset"}:  # either flag replaces the file's data source
        flags |= {"data", "dataset"}
    if args.model is not None:
        flags.add("model")
    keys = {k for k in file_data if k not in flags} | file_options(args, file_data)
    if isinstance(file_data.get("options"), dict) and args.option:
        keys.discard("options")
    return keys


def name_file(exc: PyrozooError, path: str | None, keys: set[str], options: set[str] = frozenset()) -> PyrozooError:
    """``exc`` with ``PATH: `` put before its message where the setting it begins with (``num_samples: ...``,
    ``n: ...``, ``options for MODEL: ...``) took its value from the ``--config`` file ``path``, as its unknown keys
    are named; an error about a value a flag gave is left as it is. An error about several options (``options:
    n applies only to ...``, ``options for MODEL: unknown key(s) ...``, which carry the option names in
    ``exc.names``) is judged per option against ``options``, the file's option names (:func:`file_options`): all
    from the file, ``PATH: `` goes before it; some, ``(N from PATH)`` after it. Returns ``exc`` (changed in place,
    so its type and traceback stay), for ``raise``."""
    text = str(exc)
    if not path or text.startswith(f"{path}: "):
        return exc
    head = text.split(":", 1)[0]
    if head.startswith("options for "):  # an unknown option: check_keys names the table
        head = "options"
    names = getattr(exc, "names", None)
    if head == "options" and names:
        from_file = [k for k in names if k in options]
        if len(from_file) == len(names):
            exc.args = (f"{path}: {text}",)
        elif from_file:
            exc.args = (f"{text} ({', '.join(from_file)} from {path})",)
    elif head in keys:
        exc.args = (f"{path}: {text}",)
    return exc


def handle(args: argparse.Namespace) -> int:
    from pyrozoo.evaluation.diagnostics import (
        check_table,
        convergence_judged,
        is_markov_chain,
        report_lines,
        summary,
    )
    from pyrozoo.registry import SETTINGS
    from pyrozoo.runner import run_model

    file_data = read_toml(args.config) if args.config else {}
    config = config_from_args(args, file_data)
    # settings given (flags or the file; not the defaults) that the inference does not read: the runner names them
    given = [k for k in SETTINGS if getattr(args, k, None) is not None or k in file_data]
    unapplied: list[str] = []
    try:
        output = run_model(config, out=args.out, overwrite=args.overwrite, given=given, note=unapplied.append)
    except BaseException as exc:  # a fit that fails or is interrupted: what run_model said before it still said
        for text in unapplied:
            print(f"note: {text}", flush=True)
        if isinstance(exc, PyrozooError):  # a bad value from the --config file: the error names the file
            name_file(exc, args.config, file_keys(args, file_data), file_options(args, file_data))
        raise
    result = output.result
    print(f"{config.model} [{result.inference}] seed {config.seed}: {result.wall_time:.2f} s")
    for text in unapplied:
        print(f"note: {text}")
    if not config.log_likelihood:
        print("note: --no-log-likelihood: the run has no log_likelihood group, so az.loo and az.waic will not work "
              "on it")
    idata = result.to_inference_data()
    if "log_likelihood" in idata.groups() and result.num_chains * result.num_draws < 2 and not is_markov_chain(idata):
        # a point estimate (bnn map, regime-scm): az.loo stops with ArviZ's bare IndexError on it; a sampler's one
        # draw gets report_lines' note below, which says so too
        print("note: one draw (a point estimate, or --num-samples 1): az.loo needs several draws and fails on this "
              "run; its log_likelihood group is the in-sample pointwise log-likelihood at that draw, and az.waic of "
              "it the in-sample fit, not an out-of-sample elpd")
    if result.num_chains * result.num_draws > 1:
        # az.summary of only the rows printed; the checks read check_table's columns of every row
        table = summary(idata, max_rows=SUMMARY_ROWS)
        cols = [c for c in ("mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "r_hat") if c in table.columns]
        print(table[cols].to_string(float_format=lambda v: f"{v:.4g}"))
    if result.num_chains * result.num_draws > 1 or is_markov_chain(idata):  # a sampler's one draw gets its note
        # the rule `pyrozoo diagnose` applies: ESS judged for Markov chains, one chain too (r_hat needs two or
        # more); independent draws (exact blr, SVI) not judged, and not noted here after every such fit
        table = check_table(idata, convergence=convergence_judged(idata))
        notes, lines = report_lines(idata, table, independent_notes=False,
                                    where="`pyrozoo diagnose RUN_DIR` prints the whole table")
        for line in notes:
            print(f"note: {line}")
        for line in lines:
            print(f"warning: {line}")
    if output.metrics:  # numbers, and lists of names (run_model checked them), which only metrics.json holds
        numbers = [(k, v) for k, v in output.metrics.items() if isinstance(v, (int, float))]
        more = len(output.metrics) - min(len(numbers), 12)
        if numbers:
            tail = f" ({more} more in metrics.json)" if more else ""
            print("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in numbers[:12]) + tail)
        else:
            print(f"metrics: {', '.join(output.metrics)} in metrics.json")
    print(f"saved to {output.out}")
    return 0
