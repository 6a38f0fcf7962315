"""Every benchmark script's --help shows its whole docstring (not a first line cut mid-sentence)."""

import ast
from pathlib import Path

import pytest

SCRIPTS = sorted(p for p in (Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py")
                 if not p.name.startswith("_"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_help_description_is_the_docstring(path):
    tree = ast.parse(path.read_text())
    parsers = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
               and getattr(node.func, "attr", getattr(node.func, "id", None)) == "ArgumentParser"]
    assert parsers, "no ArgumentParser"
    for call in parsers:
        kw = {k.arg: k.value for k in call.keywords}
        assert isinstance(kw.get("description"), ast.Name) and kw["description"].id == "__doc__", path.name
        assert ast.unparse(kw["formatter_class"]) == "argparse.RawDescriptionHelpFormatter", path.name
    # a backslash ending a line of a plain (not raw) docstring joins the lines: the shell continuation is lost
    source = ast.get_source_segment(path.read_text(), tree.body[0].value)
    assert "\\\n" not in source or source.startswith("r"), path.name
