"""``pyrozoo list MODEL``: how an option's default and conditions read."""

from __future__ import annotations

import dataclasses
import re

from pyrozoo import registry
from pyrozoo.cli import main


def test_an_option_note_giving_the_default_fills_the_default_column_and_nothing_nests(capsys):
    """blr's a0 read "a0  None  (float (default 2.0; only with noise=0))": the default shown was None and the
    parentheses nested; sparse-gp's noise the same."""
    assert main(["list", "blr"]) == 0
    out = capsys.readouterr().out
    assert "  a0           2.0          (float; only with noise=0)\n" in out
    assert "  b0           1.0          (float; only with noise=0)\n" in out
    assert main(["list", "sparse-gp"]) == 0
    out = capsys.readouterr().out
    assert "  noise        0.1          (float; 0 with noiseless=true, which refuses another value)\n" in out
    assert main(["list", "regime-scm"]) == 0  # a note that gives no default: a condition after the others
    out = capsys.readouterr().out
    assert "(int; only with inference enum or amortized; enum reads it only with mechanism='mlp')\n" in out


def test_a_note_default_applies_only_to_an_option_without_one_and_may_stand_alone(capsys, monkeypatch):
    base = registry.get("normal-gamma")
    entry = dataclasses.replace(base, name="notes", options={**base.options, "k": None, "w": 3.0},
                                float_options=("k",), option_notes={"k": "default 0.5", "w": "default 9.0; odd"})
    monkeypatch.setitem(registry._REGISTRY, "notes", lambda: entry)
    assert main(["list", "notes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  k +0\.5 +\(float\)$", out, flags=re.M), out  # no condition left: no trailing '; '
    assert re.search(r"^  w +3\.0 +\(float; default 9\.0; odd\)$", out, flags=re.M)  # a real default stays


def test_a_broken_entry_is_an_error_before_any_of_the_table_is_printed(capsys, monkeypatch):
    """`pyrozoo list` printed the rows before a broken registry entry, then failed: now every row is built first."""
    from pyrozoo.errors import PyrozooError

    def broken():
        raise PyrozooError("inferences of zz-broken: expected a non-empty tuple of inference names, got 'svi'")

    monkeypatch.setitem(registry._REGISTRY, "zz-broken", broken)  # sorted last: every other row comes before it
    assert main(["list"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "inferences of zz-broken" in captured.err
    monkeypatch.delitem(registry._REGISTRY, "zz-broken")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{registry.names()[0]:<14} ")
    assert out.endswith("`pyrozoo list MODEL` shows a model's options\n")


def test_spike_slab_lam_shows_the_default_each_data_source_takes(capsys, tmp_path):
    """`list spike-slab` showed "lam  None  (float)"; the default it names is the one each loader takes."""
    import numpy as np

    assert main(["list", "spike-slab"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("lam "))
    assert re.fullmatch(r"  lam +1\.0 +\(float; with the simulated data; with a data file \(--data\): the sample "
                        r"variance of y, y\^T y / \(n - 1\) of the centred y\)", line), line
    entry = registry.get("spike-slab")
    assert entry.options["lam"] is None  # the default is the source's, as the note says
    simulated = entry.simulate(0, n=40, p=4, num_signals=2, lam=None)
    assert float(simulated.inputs["lam"]) == 1.0
    y = np.array([1.0, 4.0, 2.0, 7.0, 3.0, 5.0])
    csv = tmp_path / "d.csv"
    csv.write_text("y,x\n" + "".join(f"{v},{i}\n" for i, v in enumerate(y)))
    from_file = entry.from_file(str(csv), 0, outcome="y")
    assert np.isclose(float(from_file.inputs["lam"]), ((y - y.mean()) ** 2).sum() / (len(y) - 1))
