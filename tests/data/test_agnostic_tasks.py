"""make_agnostic_data with a user's own labels: any integer coding or text recoded to 0..K-1 (the original classes
kept), missing labels in held-out splits, and the probe / leakage splits checked up front."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pyrozoo.data.agnostic_tasks import make_agnostic_data
from pyrozoo.errors import PyrozooError

RNG = np.random.default_rng(0)
X = RNG.standard_normal((12, 3))
Y01 = np.r_[np.zeros(6), np.ones(6)].astype(int)
P01 = np.tile([0, 1], 6)


@pytest.mark.parametrize(("y", "p", "y_classes", "p_classes"), [
    (Y01 + 1, P01 * 5, [1, 2], [0, 5]),
    (np.where(Y01 == 1, "hi", "lo"), np.where(P01 == 1, "m", "f"), ["hi", "lo"], ["f", "m"]),
    (pd.Series(Y01 + 1), pd.Series(P01 * 5, dtype="Int64"), [1, 2], [0, 5]),
    (pd.Series(np.where(Y01 == 1, "hi", "lo"), dtype="category"), P01.astype(bool), ["hi", "lo"], [0, 1]),
])
def test_labels_in_any_coding_are_recoded_to_0_to_k_minus_1(y, p, y_classes, p_classes):
    """y in {1, 2}, p in {0, 5} made num_classes = max + 1 phantom classes (3 and 6); text was refused."""
    data = make_agnostic_data(X, y, p, splits={"test": {"x": X, "y": y, "p": p}})
    assert data.inputs["num_classes"] == 2 and data.inputs["num_protected"] == 2
    assert data.meta["y_classes"] == y_classes and data.meta["p_classes"] == p_classes
    y_codes = torch.as_tensor([y_classes.index(v) for v in np.asarray(y).tolist()])
    assert torch.equal(data.observed["y"], y_codes)
    assert torch.equal(data.meta["splits"]["test"]["y"], y_codes)
    assert set(data.observed["p"].tolist()) == {0, 1}


def test_missing_labels_in_text_and_nullable_columns():
    y = pd.Series(np.where(Y01 == 1, "hi", "lo"), dtype=object)
    y[0] = None
    p = pd.Series(P01 * 5, dtype="Int64")
    p[1] = pd.NA
    data = make_agnostic_data(X, y, p)
    assert data.inputs["target_idx"].tolist() == list(range(1, 12))
    assert 1 not in data.inputs["protected_idx"].tolist() and data.inputs["protected_idx"].numel() == 11


def test_held_out_labels_keep_missing_rows_and_must_be_training_classes():
    y_test = (Y01 + 1).astype(float)
    y_test[:3] = np.nan
    data = make_agnostic_data(X, Y01 + 1, P01, splits={"test": {"x": X, "y": y_test, "p": np.full(12, np.nan)}})
    assert data.meta["splits"]["test"]["y"].tolist() == [-1, -1, -1] + (Y01[3:]).tolist()
    assert "p" not in data.meta["splits"]["test"]  # no labelled row: as if not given
    with pytest.raises(PyrozooError, match=r"splits\[test\]\.y: label 3 is not among the classes of the training "
                                           r"labels \(1, 2\)"):
        make_agnostic_data(X, Y01 + 1, P01, splits={"test": {"x": X, "y": Y01 + 2}})


def test_bad_labels_get_short_messages():
    """Text labels were refused with the repr of the whole Series; now text is accepted, and what is refused is
    named by one value."""
    long = pd.Series(["a"] * 5000 + [1.5] * 5000)
    for value, match in ((long, r"y: expected class labels of one kind, integers or text, got both \(e\.g\. 1\.5 "
                                r"and 'a'\)"),
                         (pd.Series([object()] * 10000), "y: expected class labels .* got a value of type object"),
                         (np.r_[np.full(5000, -2), np.ones(5000)], r"y: expected class labels >= 0 \(-1 or NaN marks "
                                                                   r"a missing label\), got -2")):
        with pytest.raises(PyrozooError, match=match) as info:
            make_agnostic_data(np.zeros((10000, 2)), value, np.tile([0, 1], 5000))
        assert len(str(info.value)) < 200


def test_probe_and_leakage_splits_are_checked_up_front():
    """A probe split without p was accepted and agnostic_metrics raised a bare KeyError 'p' later; a leakage split
    without a probe split (or the other way round) silently dropped the probe metrics."""
    full = {"x": X, "y": Y01, "p": P01}
    cases = [({"probe": {"x": X, "y": Y01}, "test": full}, "test", r"splits\[probe\]\.p: the probe split .* needs "
                                                                   r"protected labels of at least 2 classes; got none"),
             ({"probe": {"x": X, "p": np.zeros(12)}, "test": full}, "test", r"splits\[probe\]\.p: .* got one class"),
             ({"test": full}, "test", r"splits: leakage_split='test' scores fresh probes that train on a split named "
                                      r"'probe', and there is none"),
             ({"probe": full, "test": full}, None, "leakage_split: the 'probe' split trains fresh leakage probes"),
             ({"probe": full}, "probe", "leakage_split: expected a split other than 'probe'"),
             ({"probe": full, "test": {"x": X, "y": Y01}}, "test", r"splits\[test\]\.p: the leakage split scores")]
    for splits, leak, match in cases:
        with pytest.raises(PyrozooError, match=match):
            make_agnostic_data(X, Y01, P01, splits=splits, leakage_split=leak)
    ok = make_agnostic_data(X, Y01, P01, splits={"probe": {"x": X, "p": P01}, "test": full}, leakage_split="test")
    assert ok.meta["leakage_split"] == "test"


def test_training_row_labels_label_each_observation_axis():
    """``rows``: target_id carries the labels of the target-labelled rows, protected_id those of the protected-
    labelled ones (each axis a subset of the training rows); a wrong count or repeats are refused."""
    y = np.where(np.arange(12) % 4 == 0, -1, Y01)  # rows 0, 4, 8 without a target label
    labels = 100 + 3 * np.arange(12)
    data = make_agnostic_data(X, y, P01, rows=labels)
    assert data.meta["rows"]["target_id"] == [labels[i] for i in range(12) if i % 4]
    assert data.meta["rows"]["protected_id"] == labels.tolist()
    assert "rows" not in make_agnostic_data(X, y, P01).meta
    for bad in (labels[:5], np.zeros(12)):
        with pytest.raises(PyrozooError, match="rows: expected 12 distinct row labels"):
            make_agnostic_data(X, y, P01, rows=bad)


def test_cps1985_training_rows_label_the_observation_axes():
    """cps1985 splits its 534 rows as the --data reader does: its training rows (meta["split_rows"]) label
    target_id and protected_id, which held positions 0 .. n-1."""
    from pyrozoo.data.agnostic_tasks import cps1985_task

    data = cps1985_task(0)
    train = data.meta["split_rows"]["train"]
    parts = np.concatenate([train, data.meta["split_rows"]["probe"], data.meta["split_rows"]["test"]])
    assert sorted(parts.tolist()) == list(range(534)) and len(train) == data.inputs["x"].shape[0]
    assert data.meta["rows"] == {"target_id": train.tolist(), "protected_id": train.tolist()}


def test_a_text_column_of_a_dataframe_is_named():
    """make_agnostic_data(X.assign(s='t'), ...) said "got text values (e.g. 't')", naming no column."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=30), "b": rng.normal(size=30)}).assign(s="t")
    y, p = rng.integers(0, 2, 30), rng.choice(["f", "m"], 30)
    with pytest.raises(PyrozooError, match=r"^x: expected a numeric array, got text values in column 's'"):
        make_agnostic_data(X, y, p)


def test_pandas_labels_in_another_row_order_than_x_are_refused():
    """y = pd.Series(..., index=x.index).sample(frac=1) was paired with x by position: the labels were scrambled
    without an error. As in every other entry (check_same_index), pandas x, y and p must share one index, in the
    training set and in each held-out split."""
    frame = pd.DataFrame(X, columns=list("abc"), index=[f"r{i}" for i in range(12)])
    y, p = pd.Series(Y01, index=frame.index), pd.Series(P01, index=frame.index)
    shuffled = y.sample(frac=1, random_state=0)
    with pytest.raises(PyrozooError, match=r"^x, y: expected pandas inputs with the same index .* got y with the same "
                                           r"labels in another order; align them first, e\.g\. y = y\.loc\[x\.index\]"):
        make_agnostic_data(frame, shuffled, p)
    with pytest.raises(PyrozooError, match=r"^x, p: expected pandas inputs with the same index .* other labels"):
        make_agnostic_data(frame, y, p.set_axis(range(12)))
    with pytest.raises(PyrozooError, match=r"^splits\[test\]\.x, splits\[test\]\.y: expected pandas inputs with the "
                                           r"same index"):
        make_agnostic_data(frame, y, p, splits={"test": {"x": frame, "y": shuffled, "p": p}})
    data = make_agnostic_data(frame, y, p)  # aligned: accepted, labels in the rows' order
    assert torch.equal(data.observed["y"], torch.as_tensor(Y01))
    assert torch.equal(make_agnostic_data(frame, shuffled.to_numpy(), p).observed["y"],
                       torch.as_tensor(shuffled.to_numpy()))  # arrays: by position, as documented


def test_an_integer_categorical_column_of_x_is_refused():
    """An integer-coded pandas categorical column of x was read as amounts; other entry points refuse it."""
    frame = pd.DataFrame(X, columns=list("abc")).assign(c=pd.Categorical(np.arange(12) % 3))
    for kwargs in ({"x": frame}, {"x": X, "splits": {"test": {"x": frame, "y": Y01, "p": P01}}}):
        with pytest.raises(PyrozooError, match=r"x: expected numbers, got categorical column\(s\) \['c'\] "
                                               r"\(categories are labels, not amounts\); encode categories"):
            make_agnostic_data(**{"y": Y01, "p": P01, **kwargs})


def test_x_that_requires_grad_is_read_as_its_values():
    """make_agnostic_data kept x's graph: a fit then wrote gradients into the caller's x.grad. Data are values, as in
    every other entry (as_tensor(..., detach=True))."""
    x = torch.as_tensor(X, dtype=torch.float64).requires_grad_(True)
    data = make_agnostic_data(x, Y01, P01, splits={"test": {"x": x, "y": Y01, "p": P01}})
    assert not data.inputs["x"].requires_grad and data.inputs["x"].grad_fn is None
    assert torch.equal(data.inputs["x"], torch.as_tensor(X, dtype=torch.float32))
    assert not any(t.requires_grad for t in data.meta.get("splits", {}).get("test", {}).values()
                   if isinstance(t, torch.Tensor))


def test_dataframe_columns_are_recorded_and_split_columns_must_match():
    """make_agnostic_data read a split's DataFrame columns by position and kept no names: a probe or test split
    with x's columns in another order (or renamed) was accepted, and the held-out metrics were computed on permuted
    features. x's string column names are now meta["feature_names"], and a split DataFrame must have them, in
    order; arrays and tensors stay positional."""
    frame = pd.DataFrame(X, columns=list("abc"))
    data = make_agnostic_data(frame, Y01, P01)
    assert data.meta["feature_names"] == ["a", "b", "c"]
    assert "feature_names" not in make_agnostic_data(X, Y01, P01).meta  # an array has no names to record
    permuted, renamed = frame[["c", "b", "a"]], frame.set_axis(["u", "v", "w"], axis=1)
    for split in ("probe", "test"):
        for bad, detail in ((permuted, r"the same names in another order"),
                            (renamed, r"missing \['a', 'b', 'c'\], unexpected \['u', 'v', 'w'\]")):
            splits = {"probe": {"x": frame, "p": P01}, "test": {"x": frame, "y": Y01, "p": P01}}
            splits[split] = {**splits[split], "x": bad}
            with pytest.raises(PyrozooError, match=rf"splits\[{split}\]\.x: expected the columns seen in x, in that "
                                                   rf"order, \['a', 'b', 'c'\]; got \[.*\] \({detail}\)"):
                make_agnostic_data(frame, Y01, P01, splits=splits, leakage_split="test")
    ok = make_agnostic_data(frame, Y01, P01, leakage_split="test",
                            splits={"probe": {"x": X, "p": P01}, "test": {"x": frame, "y": Y01, "p": P01}})
    assert torch.equal(ok.meta["splits"]["probe"]["x"], ok.meta["splits"]["test"]["x"])  # array: by position


def test_a_leakage_split_with_one_protected_class_is_refused():
    """Only the probe split was checked for 2 protected classes: a one-class leakage split gave probe_chance 1.0,
    probes 'below chance' and no test_dp_diff / test_eo_diff, silently. Now refused like the probe split, naming
    the class."""
    text = np.where(P01 == 1, "m", "f")
    for p_test, got in ((np.full(12, "f"), "only class 'f'"), (np.r_[["m"], np.full(11, None)], "only class 'm'")):
        with pytest.raises(PyrozooError, match=rf"splits\[test\]\.p: the leakage split scores the fresh probes "
                                               rf"against the protected labels, so it needs protected labels of at "
                                               rf"least 2 classes; got {got}$"):
            make_agnostic_data(X, Y01, text, leakage_split="test",
                               splits={"probe": {"x": X, "p": text}, "test": {"x": X, "y": Y01, "p": p_test}})
    # a split the probes are not scored on may hold one class (its target accuracy is still meaningful)
    data = make_agnostic_data(X, Y01, text, leakage_split="test",
                              splits={"probe": {"x": X, "p": text}, "test": {"x": X, "y": Y01, "p": text},
                                      "other": {"x": X, "y": Y01, "p": np.full(12, "f")}})
    assert data.meta["leakage_split"] == "test"


@pytest.mark.parametrize("kind", ["numpy", "tensor", "series"])
def test_labels_coded_minus_one_plus_one_get_a_hint_that_minus_one_is_missing(kind):
    """y coded -1/+1 gave "y: expected target labels with at least 2 classes, got only class 1": -1 is a missing
    label (documented), which the message did not say; the CSV reader's does. Now it does, with the recoding,
    for y and p; labels without -1 keep the plain message."""
    pm = 2 * P01 - 1  # six -1s, six +1s
    wrap = {"numpy": np.asarray, "tensor": torch.as_tensor, "series": pd.Series}[kind]
    hint = r" \(-1 is read as a missing label, on 6 of 12 rows here; for labels coded -1/\+1 pass \({} \+ 1\) // 2"
    with pytest.raises(PyrozooError, match=r"^y: expected target labels with at least 2 classes, got only class 1"
                                           + hint.format("y")):
        make_agnostic_data(X, wrap(pm), P01)
    with pytest.raises(PyrozooError, match=r"^p: expected protected labels with at least 2 classes, got only class 1"
                                           + hint.format("p")):
        make_agnostic_data(X, Y01, wrap(pm))
    with pytest.raises(PyrozooError, match=r"^y: expected target labels with at least 2 classes, got only class 1$"):
        make_agnostic_data(X, np.ones(12), P01)
    assert make_agnostic_data(X, (wrap(pm) + 1) // 2, P01).meta["y_classes"] == [0, 1]  # the recoding given works


def test_text_labels_lose_surrounding_whitespace():
    """QA: text labels 'M ' and 'M' were two classes (a file's leading spaces were dropped by the reader, trailing
    ones kept); surrounding whitespace is dropped now, and a whitespace-only text is a missing label."""
    x = np.arange(16, dtype=np.float32).reshape(8, 2)
    y = ["a", "a ", " b", "b", "a", "a", "b", "  "]
    p = ["M ", "M", "F", "F\t", "M", "M", "F", "M"]
    data = make_agnostic_data(x, y, p)
    assert data.meta["y_classes"] == ["a", "b"] and data.meta["p_classes"] == ["F", "M"]
    np.testing.assert_array_equal(data.inputs["target_idx"].numpy(), [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(data.observed["y"].numpy(), [0, 0, 1, 1, 0, 0, 1])
    np.testing.assert_array_equal(data.observed["p"].numpy(), [1, 1, 0, 0, 1, 1, 0, 1])


def test_a_minus_one_text_label_is_missing():
    """QA: a text '-1' was a class of its own; it is a missing label, as -1 is among integer labels."""
    x = np.arange(16, dtype=np.float32).reshape(8, 2)
    y = ["a", "a", "b", "b", "-1", "a", "b", "a"]
    p = ["M", "M", "F", "F", "M", " -1", "F", "M"]
    data = make_agnostic_data(x, y, p)
    assert data.meta["y_classes"] == ["a", "b"] and data.meta["p_classes"] == ["F", "M"]
    np.testing.assert_array_equal(data.inputs["target_idx"].numpy(), [0, 1, 2, 3, 5, 6, 7])
    np.testing.assert_array_equal(data.inputs["protected_idx"].numpy(), [0, 1, 2, 3, 4, 6, 7])
    np.testing.assert_array_equal(data.observed["p"].numpy(), [1, 1, 0, 0, 1, 0, 1])


def test_rows_with_neither_label_are_left_out_of_x():
    """QA: a training row with neither a target nor a protected label was kept in x (constant_data.x), which the
    docs describe as the rows with either label; it carries no signal and is left out now, with its row label."""
    x = np.arange(16, dtype=np.float32).reshape(8, 2)
    y = [0, 1, -1, 0, 1, np.nan, -1, 1]
    p = [1, 0, -1, -1, 1, 0, None, 0]
    data = make_agnostic_data(x, y, p, rows=[10, 11, 12, 13, 14, 15, 16, 17])
    np.testing.assert_array_equal(data.inputs["x"].numpy(), x[[0, 1, 3, 4, 5, 7]])
    np.testing.assert_array_equal(data.inputs["target_idx"].numpy(), [0, 1, 2, 3, 5])
    np.testing.assert_array_equal(data.inputs["protected_idx"].numpy(), [0, 1, 3, 4, 5])
    assert data.meta["rows"] == {"target_id": [10, 11, 13, 14, 17], "protected_id": [10, 11, 14, 15, 17]}


def test_a_text_label_that_reads_as_minus_one_is_missing():
    """Review: the text '-1' was a missing label but '-1.0' (as a float column written to text reads) a class of its
    own; a text that reads as the number -1 is missing now, as the numbers -1 and -1.0 are. '-10' and '1' stay."""
    x = np.arange(16, dtype=np.float32).reshape(8, 2)
    y = ["a", "a", "b", "b", "-1.0", "a", "-10", "a"]
    p = ["M", "M", "F", "F", "M", " -1e0 ", "1", "M"]
    data = make_agnostic_data(x, y, p)
    assert data.meta["y_classes"] == ["-10", "a", "b"] and data.meta["p_classes"] == ["1", "F", "M"]
    np.testing.assert_array_equal(data.inputs["target_idx"].numpy(), [0, 1, 2, 3, 5, 6, 7])
    np.testing.assert_array_equal(data.inputs["protected_idx"].numpy(), [0, 1, 2, 3, 4, 6, 7])
