"""benchmarks/sweep_overhead.py: the overhead's 90th percentile is numpy's interpolated one, not the minimum of a
short list."""

import pytest


def test_overhead_90th_percentile(load_script):
    mod = load_script("sweep_overhead")
    stats = mod.overhead_stats(1.0, 2.0, [0.001], [0.010, 0.020], [0.5, 0.5], [0.4, 0.4])
    assert "overhead p90 (ms)" not in stats
    assert stats["overhead 90th percentile (ms)"] == pytest.approx(19.0)  # 10 + 0.9 (20 - 10)
    assert stats["overhead per cell task (ms)"] == pytest.approx(15.0)
    eight = [0.001 * k for k in range(1, 9)]  # 0.9 * 7 = 6.3: between the 7th and 8th smallest
    assert mod.overhead_stats(1.0, 2.0, [0.001], eight, [0.5], [0.4])["overhead 90th percentile (ms)"] == \
        pytest.approx(7.3)


def test_zero_reps_is_refused_before_any_work(load_script, monkeypatch, refuses_args):
    """--reps 0 used to run the sweeps and then fail in statistics.median of nothing."""
    mod = load_script("sweep_overhead")
    monkeypatch.setattr(mod, "time_sweep", lambda *a, **k: pytest.fail("ran a sweep"))
    refuses_args(mod.main, ["sweep_overhead.py", "--reps", "0", "--no-ray", "--no-overhead"],
                 "--reps: expected an integer >= 1, got 0")
