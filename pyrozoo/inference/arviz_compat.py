"""Keep ArviZ 0.x diagnostics working when numba is installed next to numpy >= 2.4.

ArviZ 0.23's numba path in ``mcse(method="sd")`` (used by ``az.summary``) calls ``float()`` on a 1-element array,
which numpy 2.4 turned from a deprecation into a TypeError. numba arrives with optional packages (econml, shap), so
a user's ``az.summary`` on a zoo run would crash for a reason unrelated to the run. ArviZ's own switch
``az.Numba.disable_numba()`` falls back to its numpy code, which gives the same numbers.
"""

from __future__ import annotations

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
