"""The layout of docs/architecture.md, held against the code: imports point down the layers, no module
imports another in a circle, no private name crosses a module, and importing the errors stays light.

Read from the source with :mod:`ast` (imports under ``if TYPE_CHECKING:`` are annotations, not imports)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = {
    # adapters: parse, call, render
    "cli": 4,
    "service": 4,
    "agent": 4,
    "__main__": 4,
    # jobs, and what reads runs for people
    "jobs": 3,
    "questions": 3,
    "report": 3,
    "config": 3,
    # edges
    "io": 2,
    "engines": 2,
    "runs": 2,
    "stores": 2,
    "settings": 2,
    "presets": 2,
    "touches": 2,
    "simulate": 2,
    "datasets": 2,
    # core
    "schema": 1,
    "errors": 1,
    "features": 1,
    "model": 1,
    "profile": 1,
    "timing": 1,
    "install": 1,
    "digest": 1,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted((SRC / "rfmseg").rglob("*.py"))}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    if top not in LAYERS:
        raise AssertionError(f"{module}: add its package to LAYERS (and to docs/architecture.md)")
    return LAYERS[top]


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken, line) for every rfmseg import outside ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("rfmseg"):
            assert node.module is not None
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub if sub in MODULES else node.module, [alias.name], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("rfmseg")]
    return found


GRAPH = {
    m: {target for target, _, _ in _imports(p) if target in MODULES and target != m}
    for m, p in MODULES.items()
    if m != "rfmseg"  # the package's face: lazy attributes only
}


def test_every_import_points_down_or_across_the_layers() -> None:
    upward = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, targets in sorted(GRAPH.items())
        for t in sorted(targets)
        if t != "rfmseg" and _layer(t) > _layer(m)
    ]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert circles == []


def test_no_private_name_is_imported_across_modules() -> None:
    crossing = [
        f"{m}:{line} takes {name} from {target}"
        for m, path in MODULES.items()
        for target, names, line in _imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert crossing == []


@pytest.mark.parametrize("module", ["rfmseg.errors", "rfmseg"])
def test_importing_the_errors_or_the_package_loads_no_heavy_library(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "heavy = [m for m in ('pandas', 'duckdb', 'pyarrow', 'sklearn', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


HEAVY_FOR_THE_CLI = ("pandas", "scipy", "sklearn", "kneed", "plotly", "pymc", "pytensor", "fastapi", "mcp", "redis",
                     "psycopg", "polars", "pyspark")  # fmt: skip
"""what only some commands use, imported by those commands when they run"""


def test_the_command_line_starts_without_the_libraries_few_commands_need() -> None:
    """`import rfmseg.cli` (every command's start, `--help` included) loads neither pandas nor SciPy,
    scikit-learn, plotly or the services' libraries: each command imports what it uses (pandas and SciPy
    took 0.8 s of a 1.5 s start, more than a whole run's work on Online Retail)."""
    code = f"import sys, rfmseg.cli\nprint(','.join(m for m in {HEAVY_FOR_THE_CLI!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_json_run_never_draws_with_rich(study_orders: Path, tmp_path: Path) -> None:
    """rich (20-30 ms of imports and styles) is loaded when a command first prints a table, a message or the
    progress display: `rfmseg run --json`, which prints JSON only, never loads it; a run printing its table
    does, and prints it."""
    code = (
        "import io, sys, contextlib\nfrom rfmseg.cli import run_app\n"
        "with contextlib.redirect_stdout(io.StringIO()) as shown:\n"
        f"    code = run_app(['run', {str(study_orders)!r}, '--runs-dir', {str(tmp_path / 'runs')!r}] + sys.argv[1:])\n"
        "print(code, 'rich' in sys.modules, 'Champions' in shown.getvalue())"
    )
    json_run = subprocess.run([sys.executable, "-c", code, "--json"], capture_output=True, text=True, check=True)
    assert json_run.stdout.split() == ["0", "False", "True"]
    table_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert table_run.stdout.split() == ["0", "True", "True"]


HELP_WALK = """
import contextlib, io, json, sys
import typer
from rfmseg.cli import app

heavy = {heavy!r}

def walk(command, path):
    yield path
    for name, sub in sorted((getattr(command, "commands", None) or {{}}).items()):
        yield from walk(sub, [*path, name])

root = typer.main.get_command(app)
report = {{}}
paths = list(walk(root, []))
for path in paths:
    with contextlib.redirect_stdout(io.StringIO()) as shown:
        try:
            root.main(args=[*path, "--help"], prog_name="rfmseg", standalone_mode=False)
        except SystemExit:
            pass
    loaded = [m for m in heavy if m in sys.modules]
    if "Usage" not in shown.getvalue() or loaded:
        report[" ".join(path) or "(root)"] = loaded or "no help page shown"
print(json.dumps({{"pages": len(paths), "report": report}}))
"""


def test_every_help_page_shows_without_the_libraries_few_commands_need() -> None:
    """Each command's `--help` (the root, every group, every command, walked from the command tree so that a
    new command is covered) shows its page and loads none of :data:`HEAVY_FOR_THE_CLI`: a help page is read
    often and costs only the start."""
    code = HELP_WALK.format(heavy=HEAVY_FOR_THE_CLI)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["pages"] > 30, found
    assert found["report"] == {}, found["report"]


def test_the_layers_cover_every_package() -> None:
    for module in MODULES:
        if module != "rfmseg":
            _layer(module)
