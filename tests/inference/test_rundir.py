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


def test_missing_run_files_is_the_one_completeness_check(tmp_path):
    """Review: the sweep runner's resume check, is_complete, the report and load_run each listed RUN_FILES' missing
    files themselves; missing_run_files is the one check they share, and they agree on it."""
    from pyrozoo.inference.rundir import RUN_FILES, load_run, missing_run_files
    from pyrozoo.sweep.runner import _broken, is_complete

    run = tmp_path / "run"
    run.mkdir()
    assert missing_run_files(run) == list(RUN_FILES) and missing_run_files(tmp_path / "absent") == list(RUN_FILES)
    for name in ("config.toml", "idata.nc"):
        (run / name).write_text("")
    assert missing_run_files(run) == ["metrics.json", "params.pt"]
    assert not is_complete(run) and _broken(run) == "incomplete: no metrics.json or params.pt"
    with pytest.raises(PyrozooError, match=r"not a complete run directory \(missing metrics.json, params.pt\)"):
        load_run(run)
    (run / "metrics.json").write_text("{}")
    (run / "params.pt").write_text("")
    assert missing_run_files(run) == [] and is_complete(run) and _broken(run) is None
    (tmp_path / "file").write_text("")
    assert missing_run_files(tmp_path / "file") == list(RUN_FILES) and not is_complete(tmp_path / "file")


def test_metrics_and_idata_record_the_requested_inference_beside_the_engine_label(tmp_path):
    """config.toml records the inference asked for (svi), while metrics.json's and idata.attrs' ``inference`` is
    the engine label of what ran (svi-meanfield): the requested name was in neither. Both now hold it as
    ``inference_requested``; a config that names no inference adds no key."""
    import json

    import numpy as np

    from pyrozoo.inference.result import Result
    from pyrozoo.inference.rundir import load_run, save_run

    rng = np.random.default_rng(0)
    result = Result(inference="svi-meanfield", posterior={"w": rng.normal(size=(1, 4))},
                    log_likelihood={"y": rng.normal(size=(1, 4, 3))}, observed_data={"y": rng.normal(size=3)},
                    dims={"y": ["obs_id"]}, seed=0)
    run = load_run(save_run(result, tmp_path / "run", config={"model": "m", "inference": "svi", "seed": 0},
                            metrics={"a": 1.0}))
    assert run["config"]["inference"] == "svi"
    assert (run["metrics"]["inference"], run["metrics"]["inference_requested"]) == ("svi-meanfield", "svi")
    assert (run["idata"].attrs["inference"], run["idata"].attrs["inference_requested"]) == ("svi-meanfield", "svi")
    bare = save_run(result, tmp_path / "bare", config={"model": "m", "seed": 0})
    assert "inference_requested" not in json.loads((bare / "metrics.json").read_text())
    assert "inference_requested" not in load_run(bare)["idata"].attrs
