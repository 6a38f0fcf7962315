"""Run configuration: defaults < TOML file < command-line flags, validated before any work starts."""

from __future__ import annotations

import codecs
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from pyrozoo.errors import PyrozooError
from pyrozoo.inference.device import DEVICES
from pyrozoo.validation import check_int, check_keys, check_positive, check_seed, check_text, expand_home

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class RunConfig:
    """Settings shared by every model; model-specific settings live in ``options`` (see ``ZooModel.options``)."""

    model: str
    inference: str | None = None  # None: the entry's default (first listed)
    seed: int = 0
    device: str = "auto"
    num_samples: int = 1000
    warmup_steps: int = 500
    num_chains: int = 4
    steps: int = 2000
    lr: float | None = None  # None: the entry's default
    jit: bool = False
    progress: bool = True
    dataset: str | None = None  # None: the entry's simulator
    data: str | None = None  # a user's data file (CSV), read by the entry's ``from_file``
    posterior_predictive: bool = False
    log_likelihood: bool = True  # False: no pointwise log-likelihood group (az.loo/az.waic will not work on the run)
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunConfig:
        """Check types and ranges of the shared settings; return self. A ``data`` path starting with ``~`` or
        ``~user`` is replaced by the path with that home directory expanded (:func:`expand_data_home`)."""
        # integral floats from TOML (seed = 2.0) become ints, so every engine sees the same value
        self.seed = check_seed("seed", self.seed)  # [0, 2**32 - 1]: what NumPy's global RNG (pyro.set_rng_seed) takes
        self.num_samples = check_int("num_samples", self.num_samples, minimum=1)
        self.warmup_steps = check_int("warmup_steps", self.warmup_steps)
        self.num_chains = check_int("num_chains", self.num_chains, minimum=1)
        self.steps = check_int("steps", self.steps)
        if self.lr is not None:
            check_positive("lr", self.lr, scalar=True)  # a quoted TOML number (lr = "0.01") or a list is refused
        if self.data is not None:  # a leading ~ expanded, as a shell would (the file was looked for under ./~)
            self.data = expand_data_home(self.data)
        if self.dataset is not None:
            check_text("dataset", self.dataset)
        if isinstance(self.device, torch.device):  # its name, which config.toml can record
            self.device = str(self.device)
        if not (self.device in DEVICES or str(self.device).startswith("cuda:")):
            raise PyrozooError(f"device: expected one of auto, cpu, cuda, cuda:N; got {self.device!r}")
        for flag in ("jit", "progress", "posterior_predictive", "log_likelihood"):
            if not isinstance(getattr(self, flag), bool):
                raise PyrozooError(f"{flag}: expected true or false, got {getattr(self, flag)!r}")
        if not isinstance(self.options, dict):
            raise PyrozooError(f"options: expected a table of model options, got {self.options!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML-writable: ``None`` values dropped)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from a dict (e.g. parsed TOML), rejecting unknown keys."""
        check_keys(source, data, [f.name for f in fields(cls)])
        if "model" not in data:
            raise PyrozooError(f"{source}: missing key 'model'")
        return cls(**data)


def expand_data_home(data: str | os.PathLike) -> str | os.PathLike:
    """A data file path (``RunConfig.data``) checked (:func:`~pyrozoo.validation.check_path`) and, when it starts
    with ``~`` or ``~user``, expanded to that home directory (a text path); any other path is returned as given. A
    ``~user`` naming no user is a :class:`PyrozooError` naming ``data``."""
    path = expand_home("data", data, what="a data file path")
    return str(path) if os.fspath(data).startswith("~") else data


def parse_toml_bytes(raw: bytes) -> dict[str, Any]:
    """The TOML document in the bytes ``raw`` of a file: UTF-8, a leading UTF-8 byte-order mark (which Windows
    editors write) skipped. The one byte-level reading of every TOML file pyrozoo reads (``--config`` files, sweep
    files, a run directory's ``config.toml``); raises ``UnicodeDecodeError`` (offsets after the mark) or
    ``tomllib.TOMLDecodeError``, which callers word for their files."""
    skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    return tomllib.loads(raw[skip:].decode("utf-8"))


def read_toml(path: str | Path, *, what: str = "config") -> dict[str, Any]:
    """Parse a TOML file (a ``--config`` run file, ``what="config"``, or a sweep file, ``what="sweep"``), turning
    I/O, encoding and syntax problems into one clear error that starts with ``what``. TOML files are UTF-8; a
    leading UTF-8 byte-order mark (which Windows editors write) is skipped. Anything that exists and is not a
    directory is read: a pipe (``--config <(...)``, ``/dev/fd/N``) or ``/dev/null`` too."""
    path = Path(path)
    if path.is_dir():
        raise PyrozooError(f"{what}: {path} is a directory; expected a TOML file")
    if not path.exists():
        raise PyrozooError(f"{what}: file {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PyrozooError(f"{what}: cannot read {path} ({exc.strerror or exc})") from None
    try:
        return parse_toml_bytes(raw)
    except UnicodeDecodeError as exc:  # the position is the byte's offset in the file (0-based)
        skip = len(raw) - len(exc.object)
        raise PyrozooError(f"{what}: {path} is not UTF-8 text (byte 0x{raw[skip + exc.start]:02x} at position "
                           f"{skip + exc.start}); TOML files must be UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise PyrozooError(f"{what}: {path} is not valid TOML ({exc})") from None


def relative_to_file(written: str | Path, folder: str | Path) -> str:
    """A relative path written in a TOML file (a ``--config`` run file's or a sweep file's ``data``) as the run
    reads it: taken relative to the file's directory ``folder``, as pyproject.toml's or Cargo.toml's paths are, and
    normalized. The one rule both kinds of file follow; the caller keeps absolute paths (and ``~``) as it will."""
    return os.path.normpath(Path(folder).absolute() / written)
