"""benchmarks/spike_slab.py: --seeds defaults to 20 (design a) and 3 (design b) only when not given; counts below
their minimum are refused by the parser, naming the flag."""

import sys

import pytest


class _Seeds(Exception):
    pass


@pytest.mark.parametrize(("argv", "seeds"), [(["--design", "a"], 20), (["--design", "b"], 3),
                                             (["--design", "a", "--seeds", "1"], 1)])
def test_seeds_default_only_when_not_given(load_script, monkeypatch, argv, seeds):
    mod = load_script("spike_slab")

    def design(seed_list, *args):
        raise _Seeds(seed_list)

    monkeypatch.setattr(mod, "design_a", design)
    monkeypatch.setattr(mod, "design_b", design)
    monkeypatch.setattr(sys, "argv", ["spike_slab.py", *argv])
    with pytest.raises(_Seeds) as caught:
        mod.main()
    assert caught.value.args[0] == list(range(seeds))


@pytest.mark.parametrize(("argv", "message"), [
    (["--seeds", "0"], "argument --seeds: expected an integer >= 1, got 0"),
    (["--ard-seeds", "-1"], "argument --ard-seeds: expected an integer >= 0, got -1"),
    (["--gibbs-chains", "0"], "argument --gibbs-chains: expected an integer >= 1, got 0"),
])
def test_counts_below_their_minimum_are_refused(load_script, monkeypatch, capsys, argv, message):
    mod = load_script("spike_slab")
    monkeypatch.setattr(mod, "design_a", lambda *a: pytest.fail("ran design a"))
    monkeypatch.setattr(sys, "argv", ["spike_slab.py", "--design", "a", *argv])
    with pytest.raises(SystemExit):
        mod.main()
    assert message in capsys.readouterr().err
