"""ruff and mypy are part of the suite: CI runs them through the README's test command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)


def test_ruff_is_clean() -> None:
    lint = _run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_is_clean() -> None:
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


PACKAGES = ("dmflow", "tasks", "flows")
MAX_FUNCTION_LINES = 60


def _parse(source: str) -> ast.Module:
    # CPython 3.11.7's AST constructor can raise "recursion depth mismatch" when another
    # thread of this test process builds an AST at the same time (fixed in later 3.11s).
    for _ in range(3):
        try:
            return ast.parse(source)
        except SystemError:
            continue
    return ast.parse(source)


def _modules(*folders: str) -> list[tuple[Path, ast.Module]]:
    return [
        (path, _parse(path.read_text()))
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
    ]


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_layers_point_one_way() -> None:
    """flows -> tasks -> dmflow; the core never imports Prefect; bench never imports tests."""
    forbidden = {
        "dmflow": {"prefect", "flows", "tasks", "tests", "bench"},
        "tasks": {"flows", "tests", "bench"},
        "flows": {"tests", "bench"},
        "bench": {"tests"},
    }
    crossings = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder, banned in forbidden.items()
        for path, tree in _modules(folder)
        for name in sorted(_imports(tree) & banned)
    ]
    assert crossings == []


def test_no_function_is_long() -> None:
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)"
        for path, tree in _modules(*PACKAGES)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_the_cli_starts_without_the_heavy_libraries() -> None:
    """`dmflow runs` and `dmflow show` print a table: loading numpy, httpx (the Supabase
    adapter) or Prefect for that added about a second to every command."""
    probe = (
        "import sys, flows.cli\n"
        "print(sorted(m for m in ('numpy', 'httpx', 'prefect', 'deeplake') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
