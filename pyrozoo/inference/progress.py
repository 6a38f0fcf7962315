"""One progress-bar factory so every long loop can be silenced the same way."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, enabled: bool = True) -> tqdm:
    """A tqdm bar over ``total`` steps; ``enabled=False`` (CLI ``--no-progress``) turns it off."""
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)
