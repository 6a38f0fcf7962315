"""``pyrozoo list``: the registered models, their inferences and datasets."""

from __future__ import annotations

import argparse

from pyrozoo import registry


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the zoo's models")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    for name in registry.names():
        entry = registry.get(name)
        print(f"{name:<14} {entry.description}")
        data = ", ".join(["simulated", *entry.datasets])
        print(f"{'':<14} inference: {', '.join(entry.inferences)}  |  data: {data}")
    return 0
