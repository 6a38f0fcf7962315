"""benchmarks/sbc.py: the rank of a true value among thinned draws, the uniformity tests, a tiny run, bad flags."""

import sys

import numpy as np
import pytest


def test_thinned_rank_takes_l_draws_evenly_within_each_chain(load_script):
    mod = load_script("sbc")
    draws = np.arange(200.0).reshape(2, 100)  # chain 0: 0..99, chain 1: 100..199
    # L = 10: 5 per chain, every 20th draw ending each stride: 19, 39, ..., 99 and 119, ..., 199
    assert mod.thinned_rank(50.0, draws, 10) == 2  # 19 and 39 are below
    assert mod.thinned_rank(150.0, draws, 10) == 7  # all of chain 0, and 119, 139
    assert mod.thinned_rank(-1.0, draws, 10) == 0 and mod.thinned_rank(1e9, draws, 10) == 10
    with pytest.raises(ValueError, match="at least 101 draws per chain"):
        mod.thinned_rank(0.0, draws, 201)


def test_uniform_ranks_pass_and_piled_ranks_fail(load_script):
    mod = load_script("sbc")
    even = list(range(100)) * 6  # every rank of {0..99} six times (L = 99)
    chi, ks, counts = mod.uniformity(even, 99)
    assert counts == [60] * 10 and chi == pytest.approx(1.0) and ks > 0.5
    piled = [99 - (r % 50) for r in range(600)]  # the upper half only
    chi, ks, _ = mod.uniformity(piled, 99)
    assert chi < 1e-10 and ks < 1e-10


def test_a_tiny_run_prints_its_table(load_script, monkeypatch, capsys):
    mod = load_script("sbc")
    monkeypatch.setattr(sys, "argv", ["sbc.py", "--case", "spike-slab", "--reps", "2", "--L", "9",
                                      "--num-samples", "20", "--warmup", "10"])
    mod.main()
    out = capsys.readouterr().out
    assert "SBC spike-slab: n = 8, p = 2, 2 replications" in out
    assert all(f"| {name} |" in out for name in ("w[0]", "w[1]", "sigma2", "theta"))


@pytest.mark.parametrize(("argv", "message"), [
    (["--case", "blr", "--raw"], "--raw: only for --case spike-slab"),
    (["--case", "blr", "--reps", "1"], "argument --reps: expected an integer >= 2, got 1"),
])
def test_bad_flags_are_refused_before_any_fit(load_script, monkeypatch, capsys, argv, message):
    mod = load_script("sbc")
    monkeypatch.setattr(mod, "replicate", lambda *a, **k: pytest.fail("fitted"))
    monkeypatch.setattr(sys, "argv", ["sbc.py", *argv])
    with pytest.raises(SystemExit):
        mod.main()
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("L", [5, 20, 33, 49, 99])
def test_uniform_ranks_pass_when_the_bins_hold_unequal_numbers_of_rank_values(load_script, L):
    # L = 20: 21 rank values in 10 bins of 2 or 3 values; L = 5: fewer values than bins
    mod = load_script("sbc")
    every = list(range(L + 1)) * 12  # each rank value equally often: counts equal to their expectation
    chi, _, counts = mod.uniformity(every, L)
    assert chi == pytest.approx(1.0) and sum(counts) == len(every) and len(counts) == min(10, L + 1)
    drawn = np.random.default_rng(L).integers(0, L + 1, 2000).tolist()  # 2000 uniform ranks, seeded
    chi, _, _ = mod.uniformity(drawn, L)
    assert chi > 1e-3  # a p-value of uniform ranks is uniform: below 1e-3 with probability 1e-3 (the old code: 2e-7)
    skewed = [L - (i % ((L + 1) // 2)) for i in range(600)]  # the upper half of the rank values only
    chi, ks, _ = mod.uniformity(skewed, L)
    assert chi < 1e-10 and ks < 1e-10


def test_too_few_draws_per_chain_for_l_are_refused_before_any_fit(load_script, monkeypatch, capsys):
    mod = load_script("sbc")
    monkeypatch.setattr(mod, "replicate", lambda *a, **k: pytest.fail("fitted"))
    monkeypatch.setattr(sys, "argv", ["sbc.py", "--case", "normal-gamma", "--reps", "2", "--L", "5000",
                                      "--num-samples", "50", "--warmup", "10"])
    with pytest.raises(SystemExit):
        mod.main()
    assert ("--num-samples: expected at least 1250 draws per chain to thin 4 chains to --L 5000, got 50"
            in capsys.readouterr().err)
    draws = np.zeros((mod.CHAINS, mod.draws_per_chain(5000, mod.CHAINS)))  # the bound is exactly thinned_rank's
    assert mod.thinned_rank(1.0, draws, 5000) == 5000
    with pytest.raises(ValueError, match="at least 1250 draws per chain"):
        mod.thinned_rank(1.0, draws[:, 1:], 5000)


@pytest.mark.parametrize("seed", ["4294967295", "4294967296", "18446744073709551616"])
def test_a_seed_whose_last_replication_leaves_the_seed_range_is_refused_before_any_fit(load_script, monkeypatch,
                                                                                       capsys, seed):
    # replication r runs with seed --seed + r: --seed 2**32 - 1 fitted replication 0, then NumPy's raw "Seed must be
    # between 0 and 2**32 - 1" ended the run; --seed 2**32 was a raw traceback at once
    mod = load_script("sbc")
    monkeypatch.setattr(mod, "replicate", lambda *a, **k: pytest.fail("fitted"))
    monkeypatch.setattr(sys, "argv", ["sbc.py", "--case", "normal-gamma", "--reps", "2", "--seed", seed, "--L", "3",
                                      "--num-samples", "4"])
    with pytest.raises(SystemExit):
        mod.main()
    assert (f"--seed: replication r runs with seed --seed + r, an integer seed in [0, 2**32 - 1], so with --reps 2 "
            f"expected --seed <= 4294967294, got {seed}") in capsys.readouterr().err


def test_the_last_seed_of_the_range_is_a_replications_seed(load_script, monkeypatch, capsys):
    mod = load_script("sbc")
    seeds = []

    def replicate(case, r, seed, *args):
        seeds.append(seed + r)
        return {"mu": (0.0, np.linspace(-1.0, 1.0, 8).reshape(4, 2))}

    monkeypatch.setattr(mod, "replicate", replicate)
    monkeypatch.setattr(sys, "argv", ["sbc.py", "--case", "normal-gamma", "--reps", "2", "--seed", str(2**32 - 2),
                                      "--L", "3", "--num-samples", "2"])
    mod.main()
    assert seeds == [2**32 - 2, 2**32 - 1] and "| mu |" in capsys.readouterr().out
