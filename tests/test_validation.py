"""The shared input checks accept numpy scalars and name the argument when they reject a value."""

from __future__ import annotations

import numpy as np
import pytest

from pyrozoo.errors import PyrozooError
from pyrozoo.validation import check_option_types, check_probability


@pytest.mark.parametrize("value", [0.05, np.float32(0.1), np.float64(0.5), 0.999])
def test_probability_accepts_python_and_numpy_reals(value):
    check_probability("alpha", value, open_interval=True)


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5, float("nan"), True, "0.1", None])
def test_probability_outside_the_open_interval_is_a_clear_error(value):
    with pytest.raises(PyrozooError, match=r"alpha: expected a number in \(0, 1\)"):
        check_probability("alpha", value, open_interval=True)


def test_closed_interval_keeps_its_ends():
    check_probability("p", 0)
    check_probability("p", 1.0)
    with pytest.raises(PyrozooError, match=r"p: expected a number in \[0, 1\]"):
        check_probability("p", 1.01)


DEFAULTS = {"flag": False, "count": 3, "scale": 1.0, "kind": "rbf"}


@pytest.mark.parametrize("given", [{"flag": True}, {"count": 7}, {"scale": 2}, {"scale": 0.5}, {"scale": [1.0, 2]},
                                   {"kind": "matern"}, {"kind": 3}])
def test_option_types_accept_values_of_the_defaults_kind(given):
    # strings are left to the model's own choice check; lists only for the declared per-column options
    assert check_option_types("option", given, DEFAULTS, list_options=("scale",)) == given


def test_integral_floats_become_ints_and_lists_need_a_declaration():
    out = check_option_types("option", {"count": 30.0, "scale": 2.0}, DEFAULTS)
    assert out == {"count": 30, "scale": 2.0} and type(out["count"]) is int
    with pytest.raises(PyrozooError, match=r"scale: option expects a number \(default 1.0\), got \[1.0, 2\]"):
        check_option_types("option", {"scale": [1.0, 2]}, DEFAULTS)


@pytest.mark.parametrize(("given", "match"), [
    ({"flag": "maybe"}, "flag: option expects true or false"),
    ({"flag": 1}, "flag: option expects true or false"),
    ({"count": "abc"}, "count: option expects an integer"),
    ({"count": 1.5}, "count: option expects an integer"),
    ({"count": True}, "count: option expects an integer"),
    ({"scale": "abc"}, "scale: option expects a number"),
    ({"scale": False}, "scale: option expects a number"),
    ({"scale": []}, "scale: option expects a number"),
    ({"scale": [1.0, "x"]}, "scale: option expects a number"),
])
def test_option_of_the_wrong_kind_is_a_clear_error(given, match):
    with pytest.raises(PyrozooError, match=match):
        check_option_types("option", given, DEFAULTS, list_options=("scale",))


def test_bool_flags_take_python_and_numpy_bools_only():
    from pyrozoo.validation import check_bool

    for ok in (True, False, np.bool_(True)):
        check_bool("flag", ok)
    for bad in ("no", 1, 0.0, None):
        with pytest.raises(PyrozooError, match="flag: expected True or False"):
            check_bool("flag", bad)
