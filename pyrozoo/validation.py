"""Input checks shared by every model: each raises :class:`PyrozooError` naming the argument."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from pyrozoo.errors import PyrozooError


def as_tensor(name: str, value: Any, *, dtype: torch.dtype | None = None, device: Any = None) -> torch.Tensor:
    """Convert array-like input to a float tensor, or say which argument could not be converted.

    Tensors keep their floating dtype unless ``dtype`` is given; other input gets ``dtype`` or torch's default.
    """
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.array(value, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise PyrozooError(f"{name}: expected a numeric array, got {type(value).__name__} ({exc})") from None
    if dtype is None:
        keep = isinstance(value, torch.Tensor) and t.is_floating_point()
        dtype = t.dtype if keep else torch.get_default_dtype()
    return t.to(dtype=dtype, device=device)


def check_finite(name: str, value: torch.Tensor | np.ndarray) -> None:
    """Raise if ``value`` holds NaN or inf, saying how many and where the first one is."""
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):
        raise PyrozooError(f"{name}: expected numbers, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(arr[first]) else "inf"
        raise PyrozooError(
            f"{name}: expected finite values, found {int(bad.sum())} non-finite ({kind} at index {first})"
        )


def check_xy(X: Any, y: Any = None, *, x_name: str = "X", y_name: str = "y", dtype: torch.dtype = torch.float64,
             min_rows: int = 1, vector_is_column: bool = False) -> tuple[torch.Tensor, Any]:
    """Regression data checked before any work: ``X`` a finite (N, D) array with N >= ``min_rows`` and D >= 1 (a
    1-D ``X`` read as one column when ``vector_is_column``), ``y`` (if given) a finite (N,) array. Both come back
    as ``dtype`` tensors, y on X's device; every error names the argument, what was expected and what came."""
    X = as_tensor(x_name, X, dtype=dtype)
    if vector_is_column and X.dim() == 1:
        X = X.unsqueeze(-1)
    if X.dim() != 2 or X.shape[0] < min_rows or X.shape[1] < 1:
        rows = "one row" if min_rows == 1 else f"{min_rows} rows"
        raise PyrozooError(f"{x_name}: expected a 2-D array (rows, features) with at least {rows} and one column, "
                           f"got shape {tuple(X.shape)}")
    check_finite(x_name, X)
    if y is not None:
        y = as_tensor(y_name, y, dtype=dtype, device=X.device)
        if y.shape != (X.shape[0],):
            raise PyrozooError(f"{y_name}: expected shape ({X.shape[0]},) (one value per row of {x_name}), got "
                               f"{tuple(y.shape)}")
        check_finite(y_name, y)
    return X, y


def check_shape(name: str, value: torch.Tensor | np.ndarray, shape: Iterable[int | None]) -> None:
    """Raise unless ``value.shape`` matches ``shape`` (``None`` matches any length)."""
    shape = tuple(shape)
    got = tuple(value.shape)
    if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got, strict=True)):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise PyrozooError(f"{name}: expected shape {want}, got {got}")


def check_positive(name: str, value: Any) -> None:
    """Raise unless every entry of ``value`` is a finite number > 0."""
    try:
        arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=float)
    except (TypeError, ValueError):
        raise PyrozooError(f"{name}: expected a finite value > 0, got {value!r}") from None
    if isinstance(value, bool) or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise PyrozooError(f"{name}: expected a finite value > 0, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    """Raise unless ``value`` is True or False (a NumPy bool counts; ``"no"`` or 1 would pass a ``bool()`` cast)."""
    if not isinstance(value, (bool, np.bool_)):
        raise PyrozooError(f"{name}: expected True or False, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    """Raise unless ``value`` is one finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
            math.isfinite(value) and value >= 0):
        raise PyrozooError(f"{name}: expected a finite number >= 0, got {value!r}")


def check_int(name: str, value: Any, *, minimum: int = 0) -> int:
    """Return ``value`` as an int, or raise unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise PyrozooError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise PyrozooError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise unless ``value`` is one of ``choices``, listing them."""
    choices = list(choices)
    if value not in choices:
        raise PyrozooError(f"{name}: expected one of {', '.join(map(str, choices))}; got {value!r}")


def check_keys(name: str, given: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Raise if ``given`` has keys outside ``allowed`` (a misspelt option should never be ignored)."""
    allowed = set(allowed)
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise PyrozooError(
            f"{name}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed)) or '(none)'}"
        )


def check_option_types(name: str, given: Mapping[str, Any], defaults: Mapping[str, Any],
                       list_options: Iterable[str] = ()) -> dict[str, Any]:
    """Check each value in ``given`` against the kind of its default in ``defaults`` and return the options with
    integral floats made ints: a bool default takes only true/false, an int default integers (``30.0`` counts, as
    for the run's own integer settings), a float default numbers, and a list of numbers where the key is in
    ``list_options`` (per-column values such as ARD lengthscales). Defaults of other types (strings, None) are left
    to the model, which checks the choices itself. Run before any work, so a typo such as ``-o hidden=abc`` never
    reaches a model."""

    def is_number(v: Any) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    list_options = set(list_options)
    out = dict(given)
    for key, value in given.items():
        default = defaults.get(key)
        if isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, numbers.Integral):
            if isinstance(value, float) and value.is_integer():
                out[key] = value = int(value)
            ok, want = isinstance(value, numbers.Integral) and not isinstance(value, bool), "an integer"
        elif isinstance(default, numbers.Real):
            ok = is_number(value) or (key in list_options and isinstance(value, (list, tuple)) and len(value) > 0
                                      and all(is_number(v) for v in value))
            want = "a number or a list of numbers" if key in list_options else "a number"
        else:
            continue
        if not ok:
            raise PyrozooError(f"{key}: {name} expects {want} (default {default!r}), got {value!r}")
    return out


def check_probability(name: str, value: float, *, open_interval: bool = False) -> None:
    """Raise unless ``value`` is in [0, 1] (or (0, 1) when ``open_interval``)."""
    # numbers.Real takes numpy scalars (np.float32 is not a float subclass); bool is excluded on purpose
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (0 < value < 1 if open_interval else 0 <= value <= 1)
    if not ok:
        rng = "(0, 1)" if open_interval else "[0, 1]"
        raise PyrozooError(f"{name}: expected a number in {rng}, got {value!r}")
