import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Small dense problems: one intra-op thread avoids OpenMP spin-waits on a shared 2-core machine.
    Opt in per module with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
