"""SWAG (Maddox et al. 2019): a Gaussian posterior from the iterates of SGD with a constant (SWA) learning rate.

Along the SWA phase the collector keeps, over T collected iterates theta_t (flat parameter vectors),
the running mean theta_bar = (1/T) sum theta_t, the running second moment (1/T) sum theta_t^2 and the last K
deviations D = [theta_t - theta_bar_t] (theta_bar_t the mean at collection time). The posterior is

    SWAG-diagonal:  N(theta_bar, scale * diag(v)),                       v = (1/T) sum theta_t^2 - theta_bar^2
    SWAG:           N(theta_bar, scale * (diag(v) + D D^T / (K - 1)))

With the default scale 0.5 the full covariance is the paper's Sigma = (Sigma_diag + Sigma_low-rank) / 2, and both
forms match the authors' code at its scale 0.5 (draws theta_bar + sqrt(scale) (sqrt(v) z1 + D z2 / sqrt(K - 1))).
The SGD loop is written here
(not with Pyro's SVI) because SWAG needs the raw iterates of a point-estimate optimizer under a learning-rate
schedule, and the collection happens between optimizer steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import resolve_device
from pyrozoo.inference.progress import progress_bar
from pyrozoo.validation import check_bool, check_finite, check_int, check_interval, check_positive, check_seed


class SWAGCollector:
    """Running first and second moments and the last ``rank`` deviations of the collected iterates (flat vectors of
    ``num_params`` values each)."""

    def __init__(self, num_params: int, *, rank: int = 20, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> None:
        num_params = check_int("num_params", num_params, minimum=1)
        self.rank = check_int("rank", rank, minimum=0)
        device = resolve_device(device)  # "auto" and "gpu" reached torch; "cuda" without CUDA got torch's error
        self.count = 0
        self.mean = torch.zeros(num_params, dtype=dtype, device=device)
        self.sq_mean = torch.zeros(num_params, dtype=dtype, device=device)
        self.deviations: list[torch.Tensor] = []

    def collect(self, theta: torch.Tensor) -> None:
        """Add one iterate (a flat vector of ``num_params`` values)."""
        if not isinstance(theta, torch.Tensor) or theta.shape != self.mean.shape:  # once per iterate: no host sync
            got = f"shape {tuple(theta.shape)}" if isinstance(theta, torch.Tensor) else type(theta).__name__
            raise PyrozooError(f"theta: expected a flat tensor of {self.mean.shape[0]} values (the collector's "
                               f"num_params), got {got}")
        theta = theta.detach().to(self.mean)
        self.count += 1
        self.mean += (theta - self.mean) / self.count
        self.sq_mean += (theta**2 - self.sq_mean) / self.count
        if self.rank > 0:
            self.deviations.append(theta - self.mean)
            if len(self.deviations) > self.rank:
                self.deviations.pop(0)

    def posterior(self, *, diagonal: bool = False, scale: float = 0.5, var_clamp: float = 1e-12) -> SWAGPosterior:
        """The SWAG (``diagonal=False``, needs >= 2 deviations) or SWAG-diagonal Gaussian; ``scale`` > 0 (finite)
        multiplies the covariance."""
        check_positive("scale", scale, scalar=True)
        if self.count < 2:
            raise PyrozooError(f"swag: need at least 2 collected iterates, got {self.count}")
        var = (self.sq_mean - self.mean**2).clamp_min(var_clamp)
        if diagonal or self.rank == 0:
            dev = torch.zeros(self.mean.shape[0], 0, dtype=self.mean.dtype, device=self.mean.device)
        else:
            if len(self.deviations) < 2:
                raise PyrozooError("swag: the low-rank part needs at least 2 deviations; collect more iterates")
            dev = torch.stack(self.deviations, dim=1)
        return SWAGPosterior(self.mean.clone(), var, dev, diagonal=diagonal or self.rank == 0, scale=scale)


@dataclass
class SWAGPosterior:
    """N(mean, scale * Sigma), Sigma = diag(var) (diagonal) or diag(var) + D D^T / (K - 1) (scale 0.5: the paper's
    (Sigma_diag + Sigma_low-rank) / 2)."""

    mean: torch.Tensor
    var: torch.Tensor
    deviations: torch.Tensor  # (P, K)
    diagonal: bool = False
    scale: float = 0.5

    def __post_init__(self) -> None:
        # a negative scale failed in math.sqrt ("math domain error") at the first draw; 0 gave a point mass silently
        check_positive("scale", self.scale, scalar=True)

    @property
    def num_params(self) -> int:
        return self.mean.shape[0]

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(d, L) with scale * Sigma = diag(d) + L L^T."""
        if self.diagonal:
            return self.scale * self.var, self.deviations[:, :0]
        K = self.deviations.shape[1]
        # before 2026-11-28 both parts were halved again here, so scale 0.5 gave half the paper's covariance
        return self.scale * self.var, self.deviations * math.sqrt(self.scale / (K - 1))

    def covariance(self) -> torch.Tensor:
        """The dense P x P covariance scale * Sigma (for small models and tests)."""
        d, L = self.factors()
        return torch.diag(d) + L @ L.T

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(num_samples, P)`` draws."""
        d, L = self.factors()
        # noise on the generator's device (a CPU generator may drive a CUDA posterior), then onto the mean's
        gdev = generator.device if generator is not None else d.device
        z1 = torch.randn(num_samples, self.num_params, generator=generator, dtype=d.dtype, device=gdev).to(d.device)
        z2 = torch.randn(num_samples, L.shape[1], generator=generator, dtype=d.dtype, device=gdev).to(d.device)
        return self.mean + z1 * d.sqrt() + z2 @ L.T

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """Map standard normals ``z`` of shape ``(..., P + K)`` to draws theta = mean + sqrt(d) z[:P] + L z[P:]
        (the reparameterization :meth:`sample` uses)."""
        d, L = self.factors()
        P = self.num_params
        return self.mean + z[..., :P] * d.sqrt() + z[..., P:P + L.shape[1]] @ L.T


@dataclass
class SWAGRun:
    """What :func:`run_swag` returns: the collector, the final SGD iterate and the per-epoch training loss."""

    collector: SWAGCollector
    final: torch.Tensor
    losses: list[float] = field(default_factory=list)
    wall_time: float = float("nan")


def swa_learning_rate(epoch: int, *, lr: float, swa_lr: float, swa_start: int) -> float:
    """Izmailov et al.'s schedule: lr for the first half of the pre-SWA phase, a linear decay to swa_lr until
    ``swa_start``, then constant swa_lr (from ``swa_start`` on, also when ``swa_start`` is 0)."""
    if epoch >= swa_start:
        return swa_lr
    t = epoch / swa_start
    if t <= 0.5:
        factor = 1.0
    elif t <= 0.9:
        factor = 1.0 - (1.0 - swa_lr / lr) * (t - 0.5) / 0.4
    else:
        factor = swa_lr / lr
    return lr * factor


def run_swag(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    theta_init: torch.Tensor,
    num_data: int,
    *,
    epochs: int = 400,
    swa_epochs: int = 100,
    batch_size: int = 32,
    lr: float = 0.01,
    swa_lr: float = 0.005,
    momentum: float = 0.9,
    rank: int = 20,
    collect_every: int | None = None,
    with_replacement: bool = False,
    seed: int = 0,
    progress: bool = False,
    progress_label: str = "swag",
) -> SWAGRun:
    """SGD on ``loss_fn(theta, batch_index)`` (an average over the batch, prior term included) with the SWA schedule
    for ``epochs`` epochs, then ``swa_epochs`` at ``swa_lr`` collecting an iterate every ``collect_every`` steps
    (default: once per epoch, as the reference's ``swa_c_epochs=1``; the deviation matrix then has
    min(rank, swa_epochs) columns). ``progress_label`` names the progress bar (a caller fitting another posterior
    from this trajectory, such as bnn's map or vi, passes its name). ``with_replacement`` draws each batch
    independently (i.i.d. gradient noise, as SGD-as-sampler theory assumes) instead of reshuffling per epoch.

    Every argument is checked before the first step: ``theta_init`` must be a flat floating tensor, and the SWA phase
    must collect at least 2 iterates, floor((epochs + swa_epochs) S / c) - floor(epochs S / c) >= 2 with S the steps
    per epoch and c = ``collect_every`` (the collector and the posterior need 2)."""
    if not callable(loss_fn):
        raise PyrozooError(f"loss_fn: expected a callable loss_fn(theta, batch_index), got {type(loss_fn).__name__}")
    if not isinstance(theta_init, torch.Tensor) or theta_init.ndim != 1 or theta_init.numel() == 0 \
            or not theta_init.dtype.is_floating_point:
        # a (2, 3) tensor ran every SGD epoch and was refused at the first collection, naming the collector's theta
        got = (f"a {theta_init.dtype} tensor of shape {tuple(theta_init.shape)}" if isinstance(theta_init, torch.Tensor)
               else type(theta_init).__name__)
        raise PyrozooError(f"theta_init: expected a flat (1-D, non-empty) floating-point tensor of the parameters, "
                           f"got {got}")
    epochs = check_int("epochs", epochs)
    swa_epochs = check_int("swa_epochs", swa_epochs, minimum=1)
    num_data = check_int("num_data", num_data, minimum=1)
    batch_size = min(check_int("batch_size", batch_size, minimum=1), num_data)
    check_positive("lr", lr)
    check_positive("swa_lr", swa_lr)
    check_interval("momentum", momentum, 0.0, 1.0, high_open=True)
    check_int("rank", rank)
    check_bool("with_replacement", with_replacement)
    seed = check_seed("seed", seed)
    check_finite("theta_init", theta_init)
    steps_per_epoch = math.ceil(num_data / batch_size)
    every_given = collect_every is not None
    collect_every = check_int("collect_every", collect_every, minimum=1) if every_given else steps_per_epoch
    # the iterates the SWA phase will collect: steps epochs*S+1 .. (epochs+swa_epochs)*S that are multiples of c
    # (known now, so too few is refused before the SGD epochs, not after them)
    collected = ((epochs + swa_epochs) * steps_per_epoch) // collect_every - (epochs * steps_per_epoch) // collect_every
    if collected < 2:
        if every_given:
            names, every = "swa_epochs, collect_every", f"one every collect_every={collect_every} steps"
        else:
            names, every = "swa_epochs", "one per epoch (collect_every unset)"
        raise PyrozooError(f"{names}: expected an SWA phase that collects at least 2 iterates (SWAG needs 2), got "
                           f"{collected}: swa_epochs={swa_epochs} x {steps_per_epoch} steps per epoch = "
                           f"{swa_epochs * steps_per_epoch} steps, collecting {every}; raise swa_epochs"
                           + (" or lower collect_every" if every_given else ""))
    device = theta_init.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    theta = theta_init.detach().clone().requires_grad_(True)
    opt = torch.optim.SGD([theta], lr=lr, momentum=momentum)
    collector = SWAGCollector(theta.numel(), rank=rank, device=device)
    losses: list[float] = []
    t0 = time.perf_counter()
    total = epochs + swa_epochs
    bar = progress_bar(total, str(progress_label), progress)
    step = 0
    try:
        for epoch in range(total):
            rate = swa_learning_rate(epoch, lr=lr, swa_lr=swa_lr, swa_start=epochs)
            for g in opt.param_groups:
                g["lr"] = rate
            # the epoch's indices go to the device in one copy, and the loss is summed there: no host-device
            # synchronization inside the step loop (one per epoch, for the finiteness check)
            if with_replacement:
                batches = torch.randint(num_data, (steps_per_epoch, batch_size), generator=gen).to(device).unbind(0)
            else:
                batches = torch.randperm(num_data, generator=gen).to(device).split(batch_size)
            acc = torch.zeros((), dtype=torch.float64, device=device)
            for idx in batches:
                opt.zero_grad()
                loss = loss_fn(theta, idx)
                loss.backward()
                opt.step()
                acc += loss.detach().double()
                step += 1
                if epoch >= epochs and step % collect_every == 0:
                    collector.collect(theta)
            losses.append(float(acc) / len(batches))
            if not math.isfinite(losses[-1]):
                raise PyrozooError(f"swag: the loss became {losses[-1]} in epoch {epoch}; lower lr")
            bar.update(1)
    finally:
        bar.close()
    return SWAGRun(collector, theta.detach(), losses, time.perf_counter() - t0)
