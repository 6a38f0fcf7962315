"""pyrozoo: a model zoo for the Pyro probabilistic programming language."""

import warnings

# ArviZ 0.x announces its 1.x refactor on import; the zoo pins 0.x, so the notice is noise for users.
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*", category=FutureWarning)

from pyrozoo.errors import PyrozooError  # noqa: E402

__all__ = ["PyrozooError"]
__version__ = "0.3.0"

# what each version changed in the numbers a run records (a resumed sweep names them for runs of older versions)
NUMBER_CHANGES = {
    "0.2.0": "the log-likelihood of fits to a standardized response (blr, gp, sparse-gp, bnn) in the data's units",
    "0.3.0": "SWAG's covariance (bnn swag, ciber, collapsed-gaussian: no longer half the paper's), plce scenario "
             "runs' treatment_model 'auto', gp NUTS test_nlpd (the predictive mixture), regime-scm gumbel on "
             "standardized columns, regime-scm enum/amortized keeping the better of the EM start and the SVI end, "
             "plce's SVI final stage (32 particles, a decaying lr), the agnostic adversary's own random stream and "
             "normal-gamma / spike-slab NUTS chains started apart",
}
