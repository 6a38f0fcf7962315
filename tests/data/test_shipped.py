"""Reading a user's CSV file (``--data``): problems in the file are one clear error before any model work."""

import pytest

from pyrozoo import registry
from pyrozoo.data.shipped import read_table
from pyrozoo.errors import PyrozooError

ROWS = "".join(f"{i % 5},{i % 3},{i % 7},{i % 2}\n" for i in range(20))


@pytest.mark.parametrize("header,name,columns", [
    ("y,t,x1,y", "y", "1, 4"),
    ("y,t,x1,t", "t", "2, 4"),
    ("y,t,x1,x1", "x1", "3, 4"),
    ("y, t, x1, y", "y", "1, 4"),  # skipinitialspace: ' y' is the same name
])
def test_a_repeated_header_name_is_rejected_naming_it(tmp_path, header, name, columns):
    """pandas renames a repeated name (y -> y.1) and the copy became a control: with header y,t,x1,y PLCE gave
    theta ~ 0 and exit 0."""
    path = tmp_path / "dup.csv"
    path.write_text(header + "\n" + ROWS)
    with pytest.raises(PyrozooError, match=rf"^data: .*dup\.csv has repeated column name\(s\) in its header row: "
                                           rf"'{name}' \(columns {columns}\)"):
        read_table(str(path))


def test_distinct_names_that_look_like_pandas_copies_are_kept(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("y,y.1,t,\n" + ROWS)
    assert list(read_table(str(path)).columns) == ["y", "y.1", "t", "Unnamed: 3"]


@pytest.mark.parametrize("model", ["plce", "effect-curve", "normal-gamma", "regime-scm"])
def test_every_data_file_reader_rejects_a_repeated_header(tmp_path, model):
    """The --data readers of plce, effect-curve, normal-gamma and regime-scm share read_table, so they share the
    check."""
    path = tmp_path / "dup.csv"
    path.write_text("y,t,x1,y\n" + ROWS)
    options = {"normal-gamma": {"column": "x1"}, "regime-scm": {"graph": "x1->t->y"}}.get(model, {})
    with pytest.raises(PyrozooError, match=r"repeated column name\(s\) in its header row: 'y'"):
        registry.get(model).from_file(str(path), 0, **options)
