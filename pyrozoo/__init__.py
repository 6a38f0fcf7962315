"""pyrozoo: a model zoo for the Pyro probabilistic programming language."""

import warnings

# ArviZ 0.x announces its 1.x refactor on import; the zoo pins 0.x, so the notice is noise for users.
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*", category=FutureWarning)

from pyrozoo.errors import PyrozooError  # noqa: E402

__all__ = ["PyrozooError"]
__version__ = "0.2.0"  # 0.2.0: log_likelihood of standardized-response fits in the data's units
