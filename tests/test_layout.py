"""The layout's rules, checked: lint and format clean, stages import only downward, no cycles, visible imports."""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib" / "tumorlens"


def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[dev]'` installs it")
    return found


def test_ruff_lint_is_clean():
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_is_clean():
    r = subprocess.run(
        [_tool("ruff"), "format", "--check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, "run `ruff format .`\n" + r.stdout + r.stderr


def test_import_layers_contract():
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _module_graph() -> dict[str, set[str]]:
    """tumorlens module -> the tumorlens modules it imports (statically, anywhere in the file)."""
    names = {}
    for p in LIB.rglob("*.py"):
        parts = p.relative_to(LIB.parent).with_suffix("").parts
        names[p] = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    known = set(names.values())
    graph: dict[str, set[str]] = {m: set() for m in known}
    for p, mod in names.items():
        for node in ast.walk(ast.parse(p.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                if t in known and t != mod:
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = _module_graph()
    assert len(graph) > 40 and "tumorlens.models.classifier" in graph["tumorlens.training.run"]
    assert _cycles(graph) == []


def test_imports_between_tumorlens_modules_are_at_the_top():
    """Only the command line imports stages inside functions (so `tumorlens data scan` never loads TensorFlow)."""
    hidden = []
    for p in sorted(LIB.rglob("*.py")):
        if p.name == "cli.py":
            continue
        for fn in ast.walk(ast.parse(p.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                mod = node.module if isinstance(node, ast.ImportFrom) else None
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [mod or ""]
                if any(m.startswith("tumorlens") for m in mods):
                    hidden.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert hidden == []


def test_the_command_line_starts_without_tensorflow():
    code = "import sys, tumorlens.cli, tumorlens.models, tumorlens.explain; print('tensorflow' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def _absolute_paths(obj, where=""):
    """Strings in a JSON document that are absolute file paths (``/a/b``), with where they sit."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _absolute_paths(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _absolute_paths(v, f"{where}[{i}]")
    elif isinstance(obj, str) and obj.startswith("/") and obj.count("/") >= 2 and " " not in obj:
        yield where, obj


def test_published_results_name_no_machine_paths():
    """Results travel: no committed results file names a folder of the machine that produced it."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to know which results are committed")
    listed = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, check=True)
    found = []
    for rel in listed.stdout.split():
        if rel.endswith(".json") and (ROOT / rel).is_file():
            found += [(rel, w, v) for w, v in _absolute_paths(json.loads((ROOT / rel).read_text()))]
    assert not found, found[:5]


def test_the_heavy_first_test_order_names_existing_files():
    from conftest import HEAVY_FIRST

    tests = Path(__file__).parent
    assert [n for n in HEAVY_FIRST if not (tests / n).is_file()] == []
    assert len(set(HEAVY_FIRST)) == len(HEAVY_FIRST)
