"""run_active_learning checks a user-built ActiveProblem and its acquisition before any fit: NumPy, pandas and lists
are converted (same results as tensors); bad fields are a PyrozooError naming the field and the row as given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pyrozoo.active import loop
from pyrozoo.active.acs_fw import ACSFW
from pyrozoo.active.baselines import BALD
from pyrozoo.active.loop import ActiveProblem, check_problem, load_problem, make_acquisition, run_active_learning
from pyrozoo.errors import PyrozooError

RUN = {"init_size": 10, "batch_size": 5, "budget": 10, "seed": 0, "progress": False}


def _regression() -> ActiveProblem:
    p = load_problem("synthetic", 0)
    return ActiveProblem("small", p.x_pool[:60], p.y_pool[:60], p.x_test[:30], p.y_test[:30])


def _classification() -> ActiveProblem:
    p = load_problem("breast-cancer", 0)
    return ActiveProblem("small-bc", p.x_pool[:60], p.y_pool[:60], p.x_test[:30], p.y_test[:30], "classification")


def _set(t: torch.Tensor, index, value: float) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


@pytest.fixture
def no_fit(monkeypatch):
    """Every model's fit fails the test: a bad problem must be refused before any work."""

    def never(*args, **kwargs):
        raise AssertionError("no fit may start")

    for name, entry in loop.ACTIVE_MODELS.items():
        monkeypatch.setitem(loop.ACTIVE_MODELS, name, entry._replace(fit=never))


# ------------------------------------------------------------------------------------------------ conversion


@pytest.mark.parametrize("convert", [
    lambda t: t.numpy(),
    lambda t: pd.DataFrame(t.numpy()) if t.dim() == 2 else pd.Series(t.numpy()),
    lambda t: t.tolist(),
])
def test_array_likes_give_the_tensor_result(convert):
    p = _regression()
    ref = run_active_learning(p, make_acquisition("acs-fw"), **RUN)
    q = ActiveProblem(p.name, convert(p.x_pool), convert(p.y_pool), convert(p.x_test), convert(p.y_test))
    got = run_active_learning(q, make_acquisition("acs-fw"), **RUN)
    cols = ["num_labelled", "selected", "rmse", "nll"]
    pd.testing.assert_frame_equal(got[cols], ref[cols])
    assert type(q.x_pool) is type(convert(p.x_pool))  # the caller's problem is left as it is


def test_float32_tensors_run():
    p = _regression()
    q = ActiveProblem(p.name, p.x_pool.float(), p.y_pool.float(), p.x_test.float(), p.y_test.float())
    df = run_active_learning(q, "acs-fw", **RUN)
    assert list(df["num_labelled"]) == [10, 15, 20] and df[["rmse", "nll"]].notna().all().all()


def test_classification_labels_as_numpy_ints():
    p = _classification()
    q = ActiveProblem(p.name, p.x_pool.numpy(), p.y_pool.long().numpy(), p.x_test.numpy(), p.y_test.int().numpy(),
                      "classification")
    ref = run_active_learning(p, "random", model="probit", **RUN)
    got = run_active_learning(q, "random", model="probit", **RUN)
    pd.testing.assert_frame_equal(got[["accuracy", "nll"]], ref[["accuracy", "nll"]])


# ------------------------------------------------------------------------------------------------ bad problems


def _bad_regression():
    p = _regression()
    x_pool, y_pool, x_test, y_test = p.x_pool, p.y_pool, p.x_test, p.y_test
    return {
        "short y_pool": ((x_pool, y_pool[:-5], x_test, y_test),
                         r"y_pool: expected shape \(60,\) \(one value per row of x_pool\), got \(55,\)"),
        "x_test width": ((x_pool, y_pool, x_test[:, :3], y_test), r"x_test: expected 9 columns \(as x_pool\), got 3"),
        "short y_test": ((x_pool, y_pool, x_test, y_test[:4]), r"y_test: expected shape \(30,\)"),
        "x_pool 1-D": ((x_pool[:, 1], y_pool, x_test, y_test), r"x_pool: expected a 2-D array"),
        "empty x_test": ((x_pool, y_pool, x_test[:0], y_test[:0]), r"x_test: expected a 2-D array .* at least one row"),
        "NaN y_test": ((x_pool, y_pool, x_test, _set(y_test, 7, float("nan"))),
                       r"y_test: expected finite values, found 1 non-finite \(NaN at index \(7,\)\)"),
        "NaN y_pool": ((x_pool, _set(y_pool, 50, float("nan")), x_test, y_test),
                       r"y_pool: expected finite values, found 1 non-finite \(NaN at index \(50,\)\)"),
        "inf x_pool": ((_set(x_pool, (40, 2), float("inf")), y_pool, x_test, y_test),
                       r"x_pool: expected finite values, found 1 non-finite \(inf at index \(40, 2\)\)"),
        "NaN x_test": ((x_pool, y_pool, _set(x_test, (3, 1), float("nan")), y_test),
                       r"x_test: expected finite values.*\(NaN at index \(3, 1\)\)"),
        "text x_pool": ((np.full((60, 9), "a"), y_pool, x_test, y_test), r"x_pool: expected a numeric array"),
        "text y_test": (
            (x_pool, y_pool, x_test, pd.Series(["a"] * 30)),
            r"y_test: expected numbers, got text values \(e.g. .a.\)"),  # check_xy: check_numeric_columns
    }


@pytest.mark.parametrize("case", sorted(_bad_regression()))
def test_a_bad_regression_problem_is_refused_before_any_fit(case, no_fit):
    arrays, match = _bad_regression()[case]
    with pytest.raises(PyrozooError, match=match):
        run_active_learning(ActiveProblem("bad", *arrays), "random", **RUN)


def test_a_nan_label_anywhere_in_the_pool_is_found_at_once(no_fit):
    """It used to surface only when its point was labelled, rounds later, indexed into the labelled subset."""
    p = _regression()
    problem = ActiveProblem("bad", p.x_pool, _set(p.y_pool, 59, float("nan")), p.x_test, p.y_test)
    with pytest.raises(PyrozooError, match=r"y_pool: .*NaN at index \(59,\)"):
        run_active_learning(problem, make_acquisition("acs-fw"), **RUN)


def _bad_classification():
    p = _classification()
    x_pool, y_pool, x_test, y_test = p.x_pool, p.y_pool, p.x_test, p.y_test
    return {
        "fraction in y_pool": ((x_pool, _set(y_pool, 12, 0.5), x_test, y_test),
                               r"y_pool: expected class labels 0 or 1, got 0.5 at row 12 \(1 such row\(s\)\)"),
        "2 in y_pool": ((x_pool, _set(_set(y_pool, 33, 2.0), 44, -1.0), x_test, y_test),
                        r"y_pool: expected class labels 0 or 1, got 2 at row 33 \(2 such row\(s\)\)"),
        "fraction in y_test": ((x_pool, y_pool, x_test, _set(y_test, 4, 0.25)),
                               r"y_test: expected class labels 0 or 1, got 0.25 at row 4"),
        "one class": ((x_pool, torch.ones(60, dtype=torch.float64), x_test, y_test),
                      r"y_pool: expected both classes 0 and 1 in a classification pool, got only class 1 \(60 rows\)"),
        "NaN label": ((x_pool, _set(y_pool, 8, float("nan")), x_test, y_test),
                      r"y_pool: expected finite values.*NaN at index \(8,\)"),
    }


@pytest.mark.parametrize("case", sorted(_bad_classification()))
def test_a_bad_classification_problem_is_refused_before_any_fit(case, no_fit):
    arrays, match = _bad_classification()[case]
    with pytest.raises(PyrozooError, match=match):
        run_active_learning(ActiveProblem("bad", *arrays, "classification"), "random", model="probit", **RUN)


def test_other_fields(no_fit):
    p = _regression()
    with pytest.raises(PyrozooError, match=r"task: expected one of regression, classification; got 'regresion'"):
        run_active_learning(ActiveProblem("x", p.x_pool, p.y_pool, p.x_test, p.y_test, "regresion"), "random", **RUN)
    with pytest.raises(PyrozooError, match=r"name: expected a string, got int"):
        run_active_learning(ActiveProblem(3, p.x_pool, p.y_pool, p.x_test, p.y_test), "random", **RUN)
    with pytest.raises(PyrozooError, match=r"problem: expected an ActiveProblem, got tuple"):
        run_active_learning((p.x_pool, p.y_pool, p.x_test, p.y_test), "random", **RUN)
    with pytest.raises(PyrozooError, match=r"x_pool: the pool is empty \(0 rows\)"):
        run_active_learning(ActiveProblem("x", p.x_pool[:0], p.y_pool[:0], p.x_test, p.y_test), "random", **RUN)
    with pytest.raises(PyrozooError, match=r"init_size: the 'bnn' model needs at least 4 labelled points"):
        run_active_learning(p, "random", model="bnn", **{**RUN, "init_size": 2})
    with pytest.raises(PyrozooError, match=r"progress: expected True or False, got 'no'"):
        run_active_learning(p, "random", **{**RUN, "progress": "no"})


def test_check_problem_returns_float64_tensors_and_leaves_the_input_alone():
    p = _regression()
    q = ActiveProblem("np", p.x_pool.numpy(), p.y_pool.float(), p.x_test.tolist(), p.y_test.numpy())
    c = check_problem(q)
    assert all(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in (c.x_pool, c.y_pool, c.x_test,
                                                                                   c.y_test))
    assert isinstance(q.x_pool, np.ndarray) and q.y_pool.dtype == torch.float32
    # float64 tensors pass through uncopied (as detached views of the same memory: data are values)
    assert check_problem(p).x_pool.data_ptr() == p.x_pool.data_ptr()


# ------------------------------------------------------------------------------------------------ acquisition


def test_acquisition_by_name_equals_the_made_acquisition():
    p = _regression()
    ref = run_active_learning(p, make_acquisition("bald"), **RUN)
    got = run_active_learning(p, "bald", **RUN)
    pd.testing.assert_frame_equal(got.drop(columns="select_seconds"), ref.drop(columns="select_seconds"))


@pytest.mark.parametrize("acquisition, match", [
    ("coreset", r"acquisition: expected one of acs-fw, .*random; got 'coreset'"),
    (5, r"acquisition: expected an Acquisition or one of acs-fw, .*, random; got int"),
    (BALD, r"acquisition: expected an Acquisition .* got ABCMeta"),  # the class, not an instance
])
def test_a_bad_acquisition_is_refused_before_any_fit(acquisition, match, no_fit):
    with pytest.raises(PyrozooError, match=match):
        run_active_learning(_regression(), acquisition, **RUN)


@pytest.mark.parametrize("acquisition", ["acs-fw-fisher", ACSFW("fisher")])
def test_a_closed_form_the_model_lacks_is_refused_before_any_fit(acquisition, no_fit):
    with pytest.raises(PyrozooError, match=r"'acs-fw-fisher' needs the closed-form fisher inner product.*'gp'"):
        run_active_learning(_regression(), acquisition, model="gp", **RUN)


def test_a_test_set_dataframe_is_checked_like_the_pool():
    """x_test went through as_tensor before check_xy, so a categorical column passed there while the pool refused
    it, and a DataFrame with the pool's columns in another order was read by position (QA pass)."""
    rng = np.random.default_rng(0)
    pool = pd.DataFrame(rng.normal(size=(30, 2)), columns=["a", "b"])
    test = pd.DataFrame(rng.normal(size=(10, 2)), columns=["a", "b"])
    y_pool, y_test = pd.Series(rng.normal(size=30)), pd.Series(rng.normal(size=10))

    def problem(x_test):
        return ActiveProblem(name="t", task="regression", x_pool=pool, y_pool=y_pool, x_test=x_test, y_test=y_test)

    with pytest.raises(PyrozooError, match=r"x_test: expected the columns seen in x_pool, \['a', 'b'\]; got "
                                           r"\['a', 'z'\] \(missing \['b'\], unexpected \['z'\]\)"):
        check_problem(problem(test.rename(columns={"b": "z"})))
    with pytest.raises(PyrozooError, match=r"x_test: expected numbers, got categorical column"):
        check_problem(problem(test.assign(b=pd.Categorical([1, 2] * 5))))
    checked = check_problem(problem(test))
    assert torch.equal(checked.x_test, torch.tensor(test.to_numpy()))


def test_a_test_set_dataframe_with_the_pool_s_columns_reordered_is_read_by_name():
    """The loop's own test metrics: a test DataFrame with the pool's columns in another order is put in the pool's
    order (it was refused, and before that read by position), so the run's RMSE and NLL are the ordered test set's."""
    p = _regression()
    cols = [f"x{i}" for i in range(p.x_pool.shape[1])]
    pool = pd.DataFrame(p.x_pool.numpy(), columns=cols)
    test = pd.DataFrame(p.x_test.numpy(), columns=cols)
    checked = check_problem(ActiveProblem("t", pool, p.y_pool, test[cols[::-1]], p.y_test))
    assert torch.equal(checked.x_test, p.x_test)
    ref = run_active_learning(ActiveProblem("t", pool, p.y_pool, test, p.y_test), "bald", **RUN)
    got = run_active_learning(ActiveProblem("t", pool, p.y_pool, test[cols[::-1]], p.y_test), "bald", **RUN)
    pd.testing.assert_frame_equal(got.drop(columns="select_seconds"), ref.drop(columns="select_seconds"))


def test_problem_tensors_that_require_grad_are_read_as_values():
    """standardize_problem failed with torch's "Can't call numpy() on Tensor that requires grad" for a pool tensor
    that requires grad (check_problem kept the graph); the problem's arrays are data, read as values: the same
    standardized problem as from the detached tensors, with no graph."""
    from pyrozoo.active.loop import standardize_problem

    p = _regression()
    grad = ActiveProblem("g", *(t.clone().requires_grad_() for t in (p.x_pool, p.y_pool, p.x_test, p.y_test)))
    checked = check_problem(grad)
    assert not any(t.requires_grad for t in (checked.x_pool, checked.y_pool, checked.x_test, checked.y_test))
    got, want = standardize_problem(grad), standardize_problem(p)
    assert not (got.x_pool.requires_grad or got.x_test.requires_grad)
    for field in ("x_pool", "y_pool", "x_test", "y_test"):
        torch.testing.assert_close(getattr(got, field), getattr(want, field), rtol=0, atol=0)
