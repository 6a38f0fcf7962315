"""``pyrozoo list [MODEL]``: the registered models, their inferences and datasets; with a name, its options."""

from __future__ import annotations

import argparse
import inspect
import re
from typing import Any

from pyrozoo import registry

# an option note that gives the effective default of an option whose entry default is None: "default 2.0; only ..."
NOTE_DEFAULT = re.compile(r"^default ([^;]+?)(?:; (.+))?$")


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the zoo's models (with a name: that model's options and defaults)")
    p.add_argument("model", nargs="?", help="a model name: show its options (-o KEY=VALUE) and their defaults")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.model is not None:
        return _show(args.model)
    rows = []  # every entry first: a broken one is an error before any of the table is printed
    for name in registry.names():
        entry = registry.get(name)
        data = ", ".join(["simulated", *entry.datasets])
        rows += [f"{name:<14} {entry.description}",
                 f"{'':<14} inference: {', '.join(entry.inferences)}  |  data: {data}"]
    print("\n".join(rows))
    print("`pyrozoo list MODEL` shows a model's options")
    return 0


def _show(name: str) -> int:
    entry = registry.get(name)  # an unknown name is a one-line error listing the known ones
    print(f"{name}: {entry.description}")
    print(f"inference: {', '.join(entry.inferences)} (default {entry.inferences[0]})")
    print("run settings each reads (the others do not apply to it):")
    width = max(len(i) for i in entry.inferences)
    for inference in entry.inferences:
        unread = entry.unread_settings(inference)
        reads = [k for k in registry.SETTINGS if k not in unread]
        print(f"  {inference:<{width}}  {', '.join(reads) or '(none)'}")
    print(f"data: simulated (default), --dataset {', --dataset '.join(entry.datasets) or '(none shipped)'}"
          + (", --data FILE.csv" if entry.from_file is not None else ""))
    print("options (-o KEY=VALUE, or [options] in a config or sweep file):")
    width = max((len(k) for k in entry.options), default=0)
    for key, default in entry.options.items():
        kind = (type(default).__name__ if default is not None else "str" if key in entry.text_options
                else "float" if key in entry.float_options else "any")
        extra = " or a list (one per input column)" if key in entry.list_options else ""
        if key in entry.data_options:
            extra += "; only with " + " or ".join(registry.describe_source(s) for s in entry.data_options[key])
        if key in entry.inference_options:
            extra += "; only with inference " + registry.or_join(entry.inference_options[key])
        note, default_text = entry.option_notes.get(key), repr(default)
        found = NOTE_DEFAULT.match(note) if default is None and note else None
        if found:  # the value it takes when not given goes into the default column, the rest stays the condition
            default_text, note = found.group(1), found.group(2)
        if note:
            extra += f"; {note}"
        if default is None:  # the data source's default, if its loader names one (plce's outcome: y, or re78)
            shown = [f"{value!r} with {registry.describe_source(source)}"
                     for source, value in _source_defaults(entry, key).items()]
            extra += f"; when not given: {', '.join(shown)}" if shown else ""
        print(f"  {key:<{width}}  {default_text:<12} ({kind}{extra})")
    return 0


def _source_defaults(entry: registry.ZooModel, key: str) -> dict[str, Any]:
    """Data source -> the default of option ``key`` in that source's loader signature, for the sources that read
    ``key`` and whose loader gives it a default other than None (an entry default of None leaves the choice to the
    loader)."""
    loaders = {"simulator": entry.simulate, **({"file": entry.from_file} if entry.from_file else {}),
               **entry.datasets}
    found = {}
    for source in entry.data_options.get(key, tuple(loaders)):
        try:
            parameter = inspect.signature(loaders[source]).parameters.get(key)
        except (KeyError, TypeError, ValueError):
            continue
        if parameter is not None and parameter.default not in (None, inspect.Parameter.empty):
            found[source] = parameter.default
    return found
