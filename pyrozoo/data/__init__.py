"""Simulators' shared pieces and loaders of data that ship inside installed packages."""

from pyrozoo.data.dataset import Dataset

__all__ = ["Dataset"]
