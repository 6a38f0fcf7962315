"""benchmarks/gibbs_vs_nuts.py: NumPyro missing -> its rows are left out with a note, before and after the work."""

import sys


def test_missing_numpyro_is_skipped_with_a_note(load_script, missing, monkeypatch, capsys):
    mod = load_script("gibbs_vs_nuts")
    missing("numpyro", "jax")
    monkeypatch.setattr(mod, "bench_pyro_nuts", lambda *args: (10.0, 1.0))  # the peer's timing is not under test
    called = []
    monkeypatch.setattr(mod, "bench_numpyro", lambda *args: called.append(args))
    monkeypatch.setattr(sys, "argv", ["gibbs_vs_nuts.py", "--n", "20", "--gibbs-chains", "4", "--gibbs-samples", "20",
                                      "--repeats", "1"])
    mod.main()
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("note: NumPyro NUTS skipped: package(s) numpyro, jax not installed")
    assert 'pip install -e ".[bench]"' in out[0]
    assert out[-1] == out[0]  # repeated under the table
    assert not called
    assert not any("| NumPyro" in line for line in out)
    assert sum(line.startswith("| 20 |") for line in out) == 3  # Gibbs, Pyro NUTS, Pyro NUTS jit


def test_zero_repeats_is_refused_before_any_work(load_script, monkeypatch, refuses_args):
    """--repeats 0 used to run the samplers and then fail in statistics.median of nothing."""
    import pytest

    mod = load_script("gibbs_vs_nuts")
    monkeypatch.setattr(mod, "simulate_normal_gamma", lambda *a, **k: pytest.fail("ran"))
    refuses_args(mod.main, ["gibbs_vs_nuts.py", "--repeats", "0"], "--repeats: expected an integer >= 1, got 0")
