"""The structure holds: modules talk through named functions, imports go one way, files stay small.

- No module reaches into another module's underscore names (``obj._x`` where ``_x`` is
  not defined in the module itself, or ``from m import _x`` of a name that is not a
  private module of its own package). Private *modules* (``cache/_core.py``) with public
  function names are how packages talk to each other inside transferkit.
- The import layers (``[tool.importlinter]`` in pyproject.toml: CLI, then orchestration,
  then the core concepts, then data and display, then helpers) are checked by
  import-linter, in this test and in CI.
- No source file is much over 700 lines.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "transferkit"
MAX_LINES = 750
#: Modules still to split (the rest of issue 16): listed so that no other file grows
#: past the limit meanwhile; remove a name when its module is split.
NOT_YET_SPLIT: set[str] = set()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute | ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.attr if isinstance(node, ast.Attribute) else node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _is_private_module(path: Path, node: ast.ImportFrom, name: str) -> bool:
    if not node.level:
        return False
    package = path.parent
    for _ in range(node.level - 1):
        package = package.parent
    target = package.joinpath(*[p for p in (node.module or "").split(".") if p])
    return (target / f"{name}.py").is_file() or (target / name / "__init__.py").is_file()


def underscore_uses(path: Path) -> list[str]:
    """The places where ``path`` uses another module's underscore names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _defined_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if _private(alias.name) and not _is_private_module(path, node, alias.name):
                    found.append(f"{node.lineno}: from {'.' * node.level}{node.module or ''} "
                                 f"import {alias.name}")
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
              and _private(node.attr) and node.attr not in own
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_uses_another_modules_underscore_names() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): uses
        for p in sorted(PACKAGE.rglob("*.py")) if (uses := underscore_uses(p))
    }
    assert offenders == {}, "use a named (public) function instead: " + repr(offenders)


def test_the_underscore_check_catches_what_it_is_for(tmp_path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_helpers.py").write_text("def named():\n    pass\n")
    bad = pkg / "bad.py"
    bad.write_text(
        "from . import _helpers\n"            # a private module of its package: fine
        "from .other import _secret\n"        # another module's private name
        "def f(cache):\n"
        "    cache._open('a')\n"              # another object's private member
        "    return _helpers._hidden\n"
    )
    uses = underscore_uses(bad)
    assert sorted(u.split(":")[0] for u in uses) == ["2", "4", "5"], uses
    good = pkg / "good.py"
    good.write_text("class A:\n    def _x(self):\n        return self._y\n"
                    "    def g(self, other: 'A'):\n        return other._x()\n")
    assert underscore_uses(good) == []


def test_import_layers_hold() -> None:
    if shutil.which("lint-imports") is None:
        if os.environ.get("CI"):  # CI installs the dev extra: the contract must run there
            pytest.fail("import-linter is not installed; CI must run the layering contract")
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        ["lint-imports", "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_no_source_file_is_much_over_700_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and str(p.relative_to(PACKAGE)) not in NOT_YET_SPLIT
    }
    assert long == {}, f"split these modules by concept: {long}"


def test_importing_transferkit_imports_no_tensorflow() -> None:
    code = "import sys, transferkit, transferkit.cache, transferkit.heads; " \
           "print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "False"
