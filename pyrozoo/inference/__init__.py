"""The shared inference engine: SVI, MCMC, Gibbs, EM, device handling, one result type."""

from pyrozoo.inference.assemble import assemble_result
from pyrozoo.inference.device import resolve_device, set_seed
from pyrozoo.inference.em import EMFit, run_em
from pyrozoo.inference.gibbs import GibbsKernel, run_gibbs
from pyrozoo.inference.mcmc import run_mcmc
from pyrozoo.inference.result import Result
from pyrozoo.inference.svi import run_svi

__all__ = [
    "EMFit",
    "GibbsKernel",
    "Result",
    "assemble_result",
    "resolve_device",
    "run_em",
    "run_gibbs",
    "run_mcmc",
    "run_svi",
    "set_seed",
]
