"""benchmarks/plce_lalonde.py: the positivity plot goes only where --plot-out says (checked before any fit, R >= 2),
--warmup reaches NUTS, R = 1 says why there is no positivity diagnostic, DoubleML missing -> skipped with a note."""

import sys

import numpy as np
import pytest


def test_check_plot_out(load_script, monkeypatch, tmp_path):
    mod = load_script("plce_lalonde")
    assert mod.check_plot_out(None, 1) is None
    monkeypatch.chdir(tmp_path)
    assert mod.check_plot_out("pos.png", 5) == tmp_path / "pos.png"  # relative to the current directory
    with pytest.raises(SystemExit, match="needs --n-repeats >= 2"):
        mod.check_plot_out("pos.png", 1)
    with pytest.raises(SystemExit, match="existing, writable folder"):
        mod.check_plot_out(str(tmp_path / "no" / "pos.png"), 5)
    with pytest.raises(SystemExit, match=r"expected a file ending in one of .*\.png.*; got 'pos.xyz'"):
        mod.check_plot_out("pos.xyz", 5)


def test_bad_plot_out_is_refused_before_any_work(load_script, monkeypatch, tmp_path):
    mod = load_script("plce_lalonde")
    monkeypatch.setattr(mod, "load_rdataset", lambda name: pytest.fail("loaded data"))
    monkeypatch.setattr(sys, "argv", ["plce_lalonde.py", "--plot-out", str(tmp_path / "no" / "pos.png")])
    with pytest.raises(SystemExit):
        mod.main()


class _FakePLCE:
    """Stands in for PLCE: records the NUTS settings and the plot path."""
    calls: dict = {}

    def __init__(self, *, n_repeats, treatment_model, seed):
        self.n_repeats = n_repeats
        self.theta_ = self.theta_feasible_ = 1000.0
        self.se_ = self.se_feasible_ = 700.0

    def fit(self, y, t, X):
        return self

    def posterior(self, **kw):
        _FakePLCE.calls["posterior"] = kw

        class Res:
            def draws(self, name):
                return np.linspace(0.0, 2000.0, 11)
        return Res()

    def positivity(self):
        summary = ({"kurtosis_mean": float("nan"), "kurtosis_share_flagged": float("nan")} if self.n_repeats < 2 else
                   {"kurtosis_mean": 1.5, "kurtosis_share_flagged": 0.02})
        return np.ones(3), summary

    def sensitivity(self):
        return {"partial_r2_treatment": 0.005, "rv_q": 0.07, "rv_q_alpha": 0.0}

    def plot_positivity(self, path):
        _FakePLCE.calls["plot"] = path
        path.write_bytes(b"png")


@pytest.mark.parametrize("n_repeats", [1, 2])
def test_warmup_plot_and_positivity_line(load_script, missing, monkeypatch, capsys, tmp_path, n_repeats):
    mod = load_script("plce_lalonde")
    missing("doubleml")
    _FakePLCE.calls = {}
    monkeypatch.setattr(mod, "PLCE", _FakePLCE)
    monkeypatch.chdir(tmp_path)
    plot = ["--plot-out", "pos.png"] if n_repeats > 1 else []
    monkeypatch.setattr(sys, "argv", ["plce_lalonde.py", "--n-repeats", str(n_repeats), "--num-samples", "7",
                                      "--warmup", "13", *plot])
    mod.main()
    out = capsys.readouterr().out.strip().splitlines()
    assert _FakePLCE.calls["posterior"]["warmup_steps"] == 13
    assert _FakePLCE.calls["posterior"]["num_samples"] == 7
    assert out[0].startswith("note: DoubleML PLR skipped: package(s) doubleml not installed") and out[-1] == out[0]
    assert not any(line.startswith("DoubleML") for line in out)
    pos = next(line for line in out if line.startswith("PLCE positivity"))
    assert "nan" not in pos
    if n_repeats == 1:
        assert "not computed" in pos and "needs --n-repeats >= 2" in pos
        assert "plot" not in _FakePLCE.calls
    else:
        assert pos.endswith(f"plot {tmp_path / 'pos.png'}")
        assert (tmp_path / "pos.png").read_bytes() == b"png"
