"""RunConfig: the shared settings' checks."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from pyrozoo.config import RunConfig, read_toml
from pyrozoo.errors import PyrozooError


def test_an_integral_float_seed_counts_as_the_integer_and_a_fraction_is_refused():
    """As the README says: seed = 1.0 (a TOML number written as a float) is seed 1, as num_samples = 20.0 is 20."""
    config = RunConfig(model="normal-gamma", seed=1.0, num_samples=20.0).validate()
    assert config.seed == 1 and type(config.seed) is int
    assert config.num_samples == 20 and type(config.num_samples) is int
    with pytest.raises(PyrozooError, match=r"^seed: expected an integer seed in \[0, 2\*\*32 - 1\].*got 1\.5$"):
        RunConfig(model="normal-gamma", seed=1.5).validate()


def test_read_toml_names_a_byte_that_is_not_utf8_and_skips_a_byte_order_mark(tmp_path, monkeypatch):
    """A Latin-1 file raised UnicodeDecodeError (a traceback from the CLI); now one error naming the byte and its
    offset. A UTF-8 byte-order mark (Notepad writes one) was 'not valid TOML (... line 1, column 1)'; now skipped."""
    monkeypatch.chdir(tmp_path)
    Path("latin1.toml").write_bytes(b'model = "normal-gamma"\n# caf\xe9\n')
    with pytest.raises(PyrozooError) as err:
        read_toml("latin1.toml")
    assert str(err.value) == ("config: latin1.toml is not UTF-8 text (byte 0xe9 at position 28); TOML files must "
                              "be UTF-8")
    Path("s.toml").write_bytes(b"\xef\xbb\xbf# caf\xe9\n")  # the position counts the mark's 3 bytes
    with pytest.raises(PyrozooError, match=r"^sweep: s\.toml is not UTF-8 text \(byte 0xe9 at position 8\)"):
        read_toml("s.toml", what="sweep")
    Path("bom.toml").write_bytes(codecs.BOM_UTF8 + 'model = "normal-gamma"\nseed = 3\n# café\n'.encode())
    assert read_toml("bom.toml") == {"model": "normal-gamma", "seed": 3}


def test_read_toml_says_a_directory_is_a_directory(tmp_path, monkeypatch):
    """`run --config .` said 'config: file . does not exist'."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PyrozooError, match=r"^config: \. is a directory; expected a TOML file$"):
        read_toml(".")
    with pytest.raises(PyrozooError, match=r"^sweep: \. is a directory; expected a TOML file$"):
        read_toml(".", what="sweep")
    with pytest.raises(PyrozooError, match=r"^config: file nope\.toml does not exist$"):
        read_toml("nope.toml")


def test_read_toml_reads_a_pipe_and_dev_null(tmp_path):
    """`run --config <(printf ...)` and `--config /dev/null` said 'config: file /dev/fd/63 does not exist': only a
    regular file was read. Anything that exists and is not a directory is read now."""
    import os

    read_end, write_end = os.pipe()
    os.write(write_end, b'model = "normal-gamma"\nseed = 3\n')
    os.close(write_end)
    try:
        assert read_toml(f"/dev/fd/{read_end}") == {"model": "normal-gamma", "seed": 3}
    finally:
        os.close(read_end)
    assert read_toml("/dev/null") == {}
    (tmp_path / "dangling.toml").symlink_to(tmp_path / "nope.toml")  # a link to nothing still does not exist
    with pytest.raises(PyrozooError, match=r"^config: file .*dangling\.toml does not exist$"):
        read_toml(tmp_path / "dangling.toml")


def test_a_data_path_starting_with_a_tilde_is_expanded_and_found(tmp_path, monkeypatch):
    """QA: ``RunConfig(data="~/d.csv")`` was refused by the entry's check as "data: file ~/d.csv does not exist"
    (Path(config.data) without expanduser); validate() now expands the home directory, and a ~user naming no user
    is one error naming data."""
    from pyrozoo import registry

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "d.csv").write_text("y,x1\n1,2\n3,4\n5,7\n")
    config = RunConfig(model="blr", data="~/d.csv", options={"outcome": "y"})
    registry.get("blr").check_config(config)
    assert config.data == str(tmp_path / "d.csv")
    assert RunConfig(model="blr", data="d.csv").validate().data == "d.csv"  # relative: left as written
    with pytest.raises(PyrozooError, match=r"^data: expected a data file path, got '~no_such_user_zz/d.csv'"):
        RunConfig(model="blr", data="~no_such_user_zz/d.csv").validate()
