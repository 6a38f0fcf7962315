"""The Python examples of README.md and docs/*.md run as written: each block imports what it uses."""
from __future__ import annotations

import ast
import builtins
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>\S*)[ \t]*$")


def python_blocks() -> list[tuple[str, str]]:
    """(``file:line``, code) of every ```python block of README.md and docs/*.md, dedented by its fence."""
    blocks = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if m:
                j = i + 1
                while not FENCE.match(lines[j]):
                    j += 1
                if m["lang"] in ("python", "py"):
                    indent = len(m["indent"])
                    blocks.append((f"{path.name}:{i + 1}", "\n".join(line[indent:] for line in lines[i + 1:j])))
                i = j
            i += 1
    return blocks


def free_names(code: str) -> set[str]:
    """Names a block reads but never binds (assignment, import, def, class, argument) and that are not builtins."""
    tree = ast.parse(code)
    bound, read = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return read - bound


def comment_words(code: str) -> set[str]:
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return {w for t in tokens if t.type == tokenize.COMMENT for w in re.findall(r"\w+", t.string)}


BLOCKS = python_blocks()


def test_the_docs_have_python_examples():
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("where, code", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_a_docs_python_block_imports_every_name_it_uses(where, code):
    """A name a block uses must be imported or defined in it, or be the reader's own (named in a comment of the
    block, as ``# X_df: a DataFrame``, or a ``my_`` placeholder of the adding-a-model template, ``fit_my_model``):
    docs/bnn.md's run_model example used run_model, RunConfig and az without importing them (a NameError as written)."""
    missing = {n for n in free_names(code) - comment_words(code) if "my_" not in n}
    assert not missing, f"{where}: {sorted(missing)} used but not imported (or named as the reader's own)"
