"""The layout's rules, read from the code itself: no import circles, torch only where it belongs,
import-free package ``__init__`` files, and no doc, script or Dockerfile naming a module or a path
that does not exist.

``DOGBREED_STRUCTURE_SRC=/other/checkout/src`` points the circle test at another tree (it fails on
da1db7c, before the regrouping).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = Path(os.environ.get("DOGBREED_STRUCTURE_SRC", REPO / "src"))
SLIM_PYTHON = REPO / ".venv-slim" / "bin" / "python"
#: Modules the slim (ONNX Runtime) server imports; the torch runtime is loaded only on request.
SLIM_SERVER_EXEMPT = {"dogbreed.serve.torch_runtime"}
#: Where docs, scripts and images name modules and paths.
REFERRING = ("docs", "README.md", "docker", "local_test", "scripts", "benchmarks", "Makefile")
TEXT_SUFFIXES = {".md", ".py", ".sh", ".txt", "", ".toml", ".yml", ".yaml", ".json", ".ipynb"}
MODULE_NAME = re.compile(r"(?<![\w.-])dogbreed(?:\.[A-Za-z_]\w*)+(?::[A-Za-z_]\w*)?")
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:src|tests|scripts|docs|benchmarks|local_test|docker)/[\w./*-]*[\w/*])"
)


def modules(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package under ``src``, by dotted name (packages by their own name)."""
    found = {}
    for path in sorted((src / "dogbreed").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith(
        "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import, inside functions too, except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if _type_checking_only(node):
            yield from (n for child in node.orelse for n in _import_nodes(child))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` imports (``from P import m`` counts ``P.m``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    known = modules(src)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    found = circles(import_graph())
    assert not found, "import circles (imports inside functions count):\n" + "\n".join(
        " <-> ".join(group) for group in found
    )


def test_the_circle_finder_finds_a_circle(tmp_path: Path) -> None:
    package = tmp_path / "dogbreed"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from dogbreed.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import x\n")
    (package / "c.py").write_text("import dogbreed.a\n")
    (package / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dogbreed import a\n"
    )
    (package / "e.py").write_text("from dogbreed import d\n")
    assert circles(import_graph(tmp_path)) == [["dogbreed.a", "dogbreed.c", "dogbreed.sub.b"]]


def test_package_init_files_import_nothing() -> None:
    importing = [
        str(path.relative_to(REPO))
        for path in (SRC / "dogbreed").rglob("__init__.py")
        if any(
            isinstance(n, ast.Import | ast.ImportFrom)
            for n in ast.walk(ast.parse(path.read_text()))
        )
    ]
    assert not importing, f"package __init__ files that import: {importing}"


def torch_free_modules() -> list[tuple[str, str]]:
    """(python, module) for each module that must not import torch: the core (except
    ``model.py``), every launcher module and every module the slim server imports."""
    selected = []
    for name in modules(REPO / "src"):
        parts = name.split(".")
        if name.endswith("__main__") or name == "dogbreed.model":
            continue
        if len(parts) == 2 or parts[:2] == ["dogbreed", "launch"]:
            selected.append((sys.executable, name))
        elif parts[:2] == ["dogbreed", "serve"] and name not in SLIM_SERVER_EXEMPT:
            selected.append((str(SLIM_PYTHON), name))
    return selected


def _torch_after_import(python: str, module: str) -> str:
    """What a fresh interpreter says after ``import module``: torch modules loaded, or its error."""
    snippet = (
        f"import sys, {module}\n"
        "print(*sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    )
    result = subprocess.run(
        [python, "-c", snippet], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    if result.returncode != 0:
        return f"{module}: import failed: {result.stderr.strip().splitlines()[-1:]}"
    return f"{module}: imports {result.stdout.split()[:3]}" if result.stdout.split() else ""


def test_core_launcher_and_slim_server_modules_never_import_torch() -> None:
    if not SLIM_PYTHON.exists():
        pytest.fail(f"{SLIM_PYTHON} is missing: run scripts/dev_env.sh (make venv)")
    selected = torch_free_modules()
    names = {name for _, name in selected}
    assert {"dogbreed.contract", "dogbreed.launch.cli.main", "dogbreed.serve.server"} <= names
    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = [p for p in pool.map(lambda pm: _torch_after_import(*pm), selected) if p]
    assert not problems, "modules that must stay torch-free:\n" + "\n".join(problems)


def referring_files() -> list[Path]:
    files = []
    for entry in REFERRING:
        root = REPO / entry
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files += [p for p in candidates if p.suffix in TEXT_SUFFIXES and "results" not in p.parts]
    return files


def _defines(path: Path, attribute: str) -> bool:
    """Whether module ``path`` defines ``attribute`` at its top level (or is a package holding it)."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == attribute:
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == attribute for t in targets):
                return True
        elif isinstance(node, ast.ImportFrom | ast.Import) and any(
            (alias.asname or alias.name) == attribute for alias in node.names
        ):
            return True
    return False


def stale_module_name(reference: str, known: dict[str, Path]) -> str | None:
    """Why ``dogbreed.a.b[.attr][:func]`` names nothing, or None when it names something."""
    dotted, _, function = reference.partition(":")
    module, rest = dotted, []
    while module not in known and "." in module:
        module, _, last = module.rpartition(".")
        rest.insert(0, last)
    if module == "dogbreed" and rest:
        return f"no module {dotted}"
    attributes = [*rest[:1], *([function] if function else [])]
    missing = [a for a in attributes if not _defines(known[module], a)]
    return f"{module} defines no {missing[0]}" if missing else None


def _written_by_a_run(path: str) -> bool:
    """Whether git ignores ``path``: a tool writes it (local_test/test_dir/model, build/...)."""
    result = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, timeout=30)
    return result.returncode == 0


def stale_references(files: list[Path]) -> list[str]:
    known = modules(REPO / "src")
    problems = []
    for path in files:
        text = path.read_text(errors="replace")
        where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        for match in sorted(set(MODULE_NAME.findall(text))):
            reason = stale_module_name(match.rstrip("."), known)
            if reason:
                problems.append(f"{where}: {match}: {reason}")
        for match in sorted(set(REPO_PATH.findall(text))):
            if not any(REPO.glob(match)) and not _written_by_a_run(match):
                problems.append(f"{where}: {match}: no such path")
    return problems


def test_docs_scripts_and_images_name_only_modules_and_paths_that_exist() -> None:
    files = referring_files()
    assert len(files) > 20 and REPO / "docs" / "development.md" in files
    problems = stale_references(files)
    assert not problems, "stale references:\n" + "\n".join(problems)


def test_the_reference_check_finds_a_stale_name_and_path(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "`dogbreed.train.job.transit_plan`, `dogbreed.train.toolkit:train`, `python -m"
        " dogbreed.export` and src/dogbreed/splits.py are real; dogbreed.cli,"
        " dogbreed.metrics.no_such_thing and src/dogbreed/data.py are not.\n"
    )
    assert stale_references([doc]) == [
        f"{doc}: dogbreed.cli: no module dogbreed.cli",
        f"{doc}: dogbreed.metrics.no_such_thing: dogbreed.metrics defines no no_such_thing",
        f"{doc}: src/dogbreed/data.py: no such path",
    ]
