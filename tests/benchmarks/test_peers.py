"""benchmarks/_peers.py: one rule for optional peers (skip with a note naming the package and the bench extra)."""


def test_split_available_names_the_missing_package_and_the_bench_extra(load_script):
    peers = load_script("_peers")
    keep, notes = peers.split_available(["ours", "theirs"], {"theirs": ("pyrozoo_no_such_package",)})
    assert keep == ["ours"]
    assert notes == ['note: theirs skipped: package(s) pyrozoo_no_such_package not installed (in the bench extra: '
                     'pip install -e ".[bench]")']


def test_installed_sees_pyrozoo_dependencies(load_script):
    peers = load_script("_peers")
    assert peers.missing_packages(["numpy", "torch", "pyrozoo_no_such_package"]) == ["pyrozoo_no_such_package"]
