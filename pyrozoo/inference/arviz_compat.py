"""Keep ArviZ 0.x diagnostics working when numba is installed next to numpy >= 2.4, and keep its false
"More chains than draws" warning off runs with fewer draws than chains.

ArviZ 0.23's numba path in ``mcse(method="sd")`` (used by ``az.summary``) calls ``float()`` on a 1-element array,
which numpy 2.4 turned from a deprecation into a TypeError. numba arrives with optional packages (econml, shap), so
a user's ``az.summary`` on a zoo run would crash for a reason unrelated to the run. ArviZ's own switch
``az.Numba.disable_numba()`` falls back to its numpy code, which gives the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import arviz as az
import numpy as np


def disable_broken_arviz_numba() -> bool:
    """Turn off ArviZ's numba path when it is on and numpy is >= 2.4 with ArviZ 0.x; returns True if it did."""
    arviz_major = int(az.__version__.split(".")[0])
    if arviz_major == 0 and az.Numba.numba_flag and np.lib.NumpyVersion(np.__version__) >= "2.4.0":
        az.Numba.disable_numba()
        return True
    return False


disable_broken_arviz_numba()


# az.from_dict (numpy_to_data_array) warns "More chains (C) than draws (D). Passed array should have shape (chains,
# draws, *shape)" whenever C > D, guessing that the axes were swapped
CHAINS_THAN_DRAWS = r"More chains \(\d+\) than draws \(\d+\)"


@contextmanager
def fewer_draws_than_chains_ok() -> Iterator[None]:
    """ArviZ's "More chains (C) than draws (D)" ``UserWarning`` hidden, and no other warning. A zoo ``Result`` holds
    its draws as (chain, draw, ...) by construction, so with fewer draws than chains (``--num-samples 1`` to 3 with
    4 chains) ArviZ's guess that the axes are swapped is wrong; what so few draws cannot give (r_hat, ESS, plots) is
    said by pyrozoo's own notes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CHAINS_THAN_DRAWS, category=UserWarning)
        yield
