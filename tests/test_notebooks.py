"""The notebooks stay thin: a parameters cell of literals, no def or class, logic in tumorlens."""

import ast
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_thin_and_parameterised(path):
    nb = jupytext.read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and code[0] is params[0], "the first code cell must be the one parameters cell"
    for node in ast.parse(params[0].source).body:
        assert isinstance(node, ast.Assign), f"parameters cell: only assignments ({ast.dump(node)[:60]})"
        ast.literal_eval(node.value)  # literals only, so papermill can override them
    for cell in code:
        tree = ast.parse(cell.source)
        bad = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert not bad, f"{path.name}: define functions and classes in tumorlens, not in notebooks"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def test_colab_notebook_is_paired():
    root = Path(__file__).resolve().parents[1] / "notebooks"
    a, b = jupytext.read(root / "colab_walkthrough.py"), jupytext.read(root / "colab_walkthrough.ipynb")
    assert [c.source for c in a.cells] == [c.source for c in b.cells]
