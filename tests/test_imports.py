"""The repository's import graph: no circle anywhere, and the packages import one way: DESIGN §1's layers, checked by
`lint-imports` with the contracts in pyproject.toml (schemas at the bottom, evals above the job and the trainer).

Every .py of the repo's own packages (and top-level modules) is parsed with `ast`; each ``import X`` and
``from X import Y`` anywhere in it (inside functions too) becomes an edge to the repo module it names (``X.Y`` when Y
is a submodule, else ``X``). Third-party and standard-library imports are not edges. Importing a submodule also runs
its packages' ``__init__``; that implicit step is not an edge (a package's ``__init__`` imports its own submodules).
An ``if __name__ == "__main__":`` block is skipped: it runs only when the file is the program, never on import.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every package with an __init__.py at the top level and every top-level .py."""
    out: dict[str, Path] = {}
    for path in sorted(ROOT.glob("*.py")):
        out[path.stem] = path
    for init in sorted(ROOT.glob("*/__init__.py")):
        for path in sorted(init.parent.rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is a repo module (None: not ours)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def _is_main_block(node: ast.AST) -> bool:
    """``if __name__ == "__main__":``"""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
    )


def _walk(tree: ast.Module) -> list[ast.AST]:
    """Every node of `tree` outside its ``if __name__ == "__main__":`` blocks."""
    top = [n for n in tree.body if not _is_main_block(n)]
    return [node for n in top for node in ast.walk(n)]


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges: set[str] = set()
    for node in _walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            found = _resolve(target, modules)
            if found is not None and found != module:
                edges.add(found)
    return edges


def import_graph() -> dict[str, set[str]]:
    """Repo module -> the repo modules it imports."""
    modules = _module_files()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # the graph has a few hundred nodes: recursion depth is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_sees_imports_inside_functions_and_relative_imports() -> None:
    graph = import_graph()
    assert "pipeline.rejects" in graph["pipeline.decode"] and "pipeline.video" in graph["pipeline.decode"]
    assert "cli.run" in graph["microturn_cli"] and "pipeline.job" in graph["cli.run"]  # inside the CLI's functions
    assert "tests.factories" in graph["tests.pipeline.test_job"]  # from ..factories import ...
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the finder finds
    main_only = ast.parse("import os\nif __name__ == '__main__':\n    import microturn_cli\n")
    assert [type(n).__name__ for n in _walk(main_only) if isinstance(n, ast.Import)] == ["Import"]


def test_no_import_circle() -> None:
    assert _cycles(import_graph()) == []


def _lint_imports(cwd: Path, config: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe), "--config", str(config), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_layers_of_design_hold() -> None:
    """DESIGN §1's layers, as the import-linter contracts in pyproject.toml state them."""
    done = _lint_imports(ROOT, ROOT / "pyproject.toml", ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_wrong_import_breaks_a_contract(tmp_path: Path) -> None:
    """The same contracts on a copy of the package names where the trainer imports the job and schemas imports
    evals (inside a function): lint-imports fails and names both."""
    bodies = {
        "schemas": "def f():\n    import evals.score\n",
        "pipeline": "",
        "synth": "",
        "trainer": "import pipeline.job\n",
        "kernels": "",
        "evals": "",
        "cli": "",
    }
    for name, body in bodies.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(body)
    (tmp_path / "pipeline" / "job.py").write_text("")
    (tmp_path / "evals" / "score.py").write_text("")
    done = _lint_imports(tmp_path, ROOT / "pyproject.toml", tmp_path)
    assert done.returncode != 0
    assert "pipeline, synth and trainer never import each other BROKEN" in done.stdout
    assert "schemas is the bottom layer: it imports no other part BROKEN" in done.stdout
