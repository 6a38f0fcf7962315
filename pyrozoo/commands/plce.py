"""``pyrozoo plce``: the partially linear causal effect of a treatment column on an outcome column of a CSV file
(or of a simulated scenario of the talk), printed as a table; ``--out`` also saves a run directory.

    pyrozoo plce --data file.csv --outcome y --treatment t [--controls a,b,c] [--groups g]
    pyrozoo plce --scenario heterogeneity --treatment-model heteroskedastic
"""

from __future__ import annotations

import argparse
import math

from pyrozoo.errors import PyrozooError

# the final stage's engine settings (one NUTS chain; warm-up as RunConfig's default, the one `pyrozoo run plce` uses)
NUM_SAMPLES, WARMUP_STEPS, STEPS = 1000, 500, 1000


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plce", help="partially linear causal effect of a treatment column (PLCE)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", help="CSV file with a header row")
    src.add_argument("--scenario", help="simulate one of the talk's designs instead "
                     "(baseline, heterogeneity, random_effects, interference, combined)")
    src.add_argument("--dataset", help="a shipped dataset (lalonde)")
    p.add_argument("--outcome", help="outcome column (default y; re78 with --dataset lalonde)")
    p.add_argument("--treatment", help="treatment column (default t; treat with --dataset lalonde)")
    p.add_argument("--controls", help="comma-separated control columns (default: all other columns)")
    p.add_argument("--groups", help="group id column (random intercepts)")
    p.add_argument("--treatment-model", choices=("auto", "homoskedastic", "heteroskedastic"),
                   help="default auto: heteroskedastic on a --scenario whose treatment is heteroskedastic "
                        "(heterogeneity, combined; the unweighted estimate there targets a variance-weighted effect, "
                        "not the true theta = 1), homoskedastic otherwise")
    p.add_argument("--interference", action="store_true", help="learn kernel-weighted interference terms")
    p.add_argument("--se-type", default="hc3", choices=("hc3", "cluster"),
                   help="hc3 (default) | cluster (cluster-robust by --groups; warns below 30 clusters)")
    p.add_argument("--no-linear-controls", dest="linear_controls", action="store_false",
                   help="do not force the standardized controls into the nuisance refit (the default forces them; "
                        "the refit needs the spike_slab learner)")
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--n-repeats", type=int, default=5)
    p.add_argument("--learner", default="spike_slab", help="spike_slab | ridge | lasso")
    p.add_argument("--n-knots", type=int, help="spline knots per continuous control (default 5)")
    p.add_argument("--interactions", help="pairwise terms of the basis: quadratic (default) | linear | none")
    p.add_argument("--inference", default="nuts",
                   help="final-stage engine: nuts (one chain) | svi; the sampler's convergence warnings are printed "
                        "as by pyrozoo run")
    p.add_argument("--num-samples", type=int, default=NUM_SAMPLES,
                   help=f"posterior draws (NUTS: of its one chain; default {NUM_SAMPLES})")
    p.add_argument("--warmup-steps", type=int,
                   help=f"NUTS warm-up (adaptation) steps before the draws (default {WARMUP_STEPS}, as pyrozoo run; "
                        f"not read by svi)")
    p.add_argument("--steps", type=int, help=f"SVI steps (with --inference svi; default {STEPS}; not read by nuts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default: the nuisance learners run on the CPU) | auto | cuda")
    p.add_argument("--out", help="also save a run directory here")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="accepted like the other commands' flag (plce shows no progress bar)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from pyrozoo.commands.run import absolute_data_path
    from pyrozoo.config import RunConfig
    from pyrozoo.evaluation.diagnostics import check_table, convergence_judged, is_markov_chain, report_lines
    from pyrozoo.runner import run_model

    if args.data is None and args.scenario is None and args.dataset is None:
        raise PyrozooError("plce: give --data FILE (with --outcome and --treatment), --scenario NAME or --dataset")
    options = {"interference": args.interference,
               "n_folds": args.n_folds, "n_repeats": args.n_repeats, "learner": args.learner,
               "se_type": args.se_type, "linear_controls": args.linear_controls}
    if args.treatment_model is not None:  # left out: the entry's "auto" (the scenario's, else homoskedastic)
        options["treatment_model"] = args.treatment_model
    if args.scenario is not None:
        options["scenario"] = args.scenario
    # column flags only when given: with --scenario they are an error (the simulated design has its own columns)
    given = {"outcome": args.outcome, "treatment": args.treatment, "controls": args.controls, "groups": args.groups,
             "n_knots": args.n_knots, "interactions": args.interactions}
    _refuse_empty_flags(given)
    options.update({k: v for k, v in given.items() if v is not None})
    if args.overwrite and args.out is None:
        raise PyrozooError("overwrite: --overwrite replaces an --out directory; give --out too")
    settings = {"warmup_steps": args.warmup_steps, "steps": args.steps}
    config = RunConfig(model="plce", inference=args.inference, seed=args.seed, device=args.device,
                       num_samples=args.num_samples, num_chains=1,
                       warmup_steps=WARMUP_STEPS if args.warmup_steps is None else args.warmup_steps,
                       steps=STEPS if args.steps is None else args.steps, progress=False,
                       data=absolute_data_path(args.data), dataset=args.dataset, options=options)
    # the engine settings given that the inference does not read (--steps with nuts, --warmup-steps with svi): the
    # runner's note, as `pyrozoo run` prints it; num_chains=1 is this command's own choice, nothing to name
    given = [k for k, v in settings.items() if v is not None]
    unapplied: list[str] = []
    with warnings.catch_warnings(record=True) as caught:  # sklearn's lasso warns once per unconverged fit
        warnings.simplefilter("always", ConvergenceWarning)
        output = run_model(config, out=args.out, save=args.out is not None, overwrite=args.overwrite, given=given,
                           note=unapplied.append)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    est = output.metrics
    table = _table(output)
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    if "controls" in est:  # --data / --dataset: what was adjusted for (metrics.json has the list too)
        print("controls: " + ", ".join(map(str, est["controls"])))
    sens = {k: est[k] for k in ("rv_q", "rv_q_alpha", "partial_r2", "sensitivity_t_stat") if k in est}
    print("sensitivity (classical t of ry ~ rt, the split of median |t|): "
          + ", ".join(f"{k}={v:.3g}" for k, v in sens.items()))
    if "kurtosis_share_flagged" in est:
        if math.isfinite(est["kurtosis_share_flagged"]):
            print(f"positivity: mean kurtosis {est['kurtosis_mean']:.3g}, "
                  f"share of units flagged {est['kurtosis_share_flagged']:.3g}")
        else:  # the kurtosis is taken across the R splits
            print("positivity: not computed (needs --n-repeats 2 or more)")
    for text in unapplied:
        print(f"note: {text}")
    # the final stage's convergence, by the rule `pyrozoo run` and `pyrozoo diagnose` apply (one NUTS chain: ESS
    # judged, r_hat not; SVI's independent draws: not judged)
    idata = output.result.to_inference_data()
    if is_markov_chain(idata):
        where = ("`pyrozoo diagnose RUN_DIR` prints the whole table" if output.out is not None
                 else "rerun with --out DIR; `pyrozoo diagnose DIR` prints the whole table")
        notes, lines = report_lines(idata, check_table(idata, convergence=convergence_judged(idata)),
                                    independent_notes=False, where=where)
        for line in notes:
            print(f"note: {line}")
        for line in lines:
            print(f"warning: {line}")
    if unconverged:
        print(f"note: {unconverged} nuisance fit(s) stopped before sklearn's convergence tolerance "
              f"(ConvergenceWarning); the estimate uses them as they are")
    if output.out is not None:
        print(f"saved to {output.out}")
    return 0


def _refuse_empty_flags(given: dict[str, object]) -> None:
    """Raise for a text flag given an empty value (``--treatment ""``, ``--controls ","``): it used to fall back to
    the default column (or the default controls, no groups, the default interactions) without a word, because an
    empty option is how the Python API spells "the default"."""
    for option, value in given.items():
        if not isinstance(value, str):
            continue
        flag = "--" + option.replace("_", "-")
        names = [c for c in value.split(",") if c.strip()] if option == "controls" else [value.strip()]
        if not any(names):
            what = "a comma-separated list of columns" if option == "controls" else (
                "quadratic, linear or none" if option == "interactions" else "a column")
            default = "no groups" if option == "groups" else "the default"
            raise PyrozooError(f"{option}: {flag} was given {value!r}; expected {what} (leave {flag} out for "
                               f"{default})")


def _table(output: object) -> object:
    import pandas as pd

    m = output.metrics
    tf, sf = m["theta_feasible"], m["se_feasible"]
    # plce_metrics names the SE by its type; both rows use it (the feasible model's SE is of the same type)
    key, label = next((k, lab) for k, lab in (("se_hc3", "HC3"), ("se_cluster", "cluster")) if k in m)
    rows = {f"PLCE ({label})": (m["theta"], m[key], m["ci_low"], m["ci_high"]),
            f"PLCE feasible ({label})": (tf, sf, tf - 1.959964 * sf, tf + 1.959964 * sf),
            f"posterior [{output.result.inference}]": (m["posterior_mean"], m["posterior_sd"], m["posterior_q2.5"],
                                                       m["posterior_q97.5"])}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "std_err", "ci_2.5%", "ci_97.5%"])
