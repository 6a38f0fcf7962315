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
