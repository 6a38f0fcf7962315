"""Atomic directory writes shared by run directories and a sweep's failure records."""

import pytest

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.rundir import replaced_atomically


def test_a_finished_block_replaces_the_old_directory(tmp_path):
    dest = tmp_path / "run"
    (dest / "old").mkdir(parents=True)
    with replaced_atomically(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".run.") and not any(tmp.iterdir())
        (tmp / "new.txt").write_text("done")
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_failing_block_leaves_the_old_directory_and_no_sibling(tmp_path):
    dest = tmp_path / "run"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt), replaced_atomically(dest) as tmp:
        (tmp / "half.txt").write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_parent_that_cannot_hold_it_names_the_argument(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PyrozooError, match=r"^sweep out: cannot create .*file/x/run"), \
            replaced_atomically(blocker / "x" / "run", what="sweep out"):
        pass
