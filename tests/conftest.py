import warnings

import pyro
import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(autouse=True)
def _seed_and_clean():
    """Fixed seed and an empty param store before every test."""
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="module")
def one_thread():
    """Small dense problems (GP solves, EM's Cholesky on ~50 columns, small convolutions): one torch thread and one
    BLAS thread avoid OpenMP spin-waits on a shared 2-core machine. Opt in per module with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture
def curve_csv(tmp_path):
    """curve_csv(n, seed, **constant_columns) -> (df, path): a user's regression file, columns u, v ~ U(-3, 3) and
    outcome z = sin(u) + 0.1 e, written without its index (the --data tests of the regression models)."""
    import numpy as np
    import pandas as pd

    def write(n: int, seed: int, **extra):
        rng = np.random.default_rng(seed)
        X = rng.uniform(-3, 3, (n, 2))
        df = pd.DataFrame(X, columns=["u", "v"]).assign(z=np.sin(X[:, 0]) + 0.1 * rng.standard_normal(n), **extra)
        path = tmp_path / "curve.csv"
        df.to_csv(path, index=False)
        return df, path

    return write
