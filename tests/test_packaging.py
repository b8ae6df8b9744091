"""Every file the code reads from inside its packages is declared as package data, so that an install that is
not editable (a wheel, a Zoo environment) holds it too."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = {".py", ".pyc"}


def _package_of(path: Path) -> Path:
    """The nearest folder above ``path`` that is a package (holds ``__init__.py``)."""
    folder = path.parent
    while not (folder / "__init__.py").exists():
        folder = folder.parent
    return folder


def test_every_data_file_inside_a_package_is_declared_as_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = config["tool"]["setuptools"]["package-data"]
    undeclared = []
    for top in config["tool"]["setuptools"]["packages"]["find"]["include"]:
        for path in sorted((ROOT / top.rstrip("*")).rglob("*")):
            if not path.is_file() or path.suffix in CODE or "__pycache__" in path.parts:
                continue
            package = _package_of(path)
            name = ".".join(package.relative_to(ROOT).parts)
            inner = path.relative_to(package).as_posix()
            if not any(fnmatch.fnmatch(inner, pattern) for pattern in declared.get(name, ())):
                undeclared.append(path.relative_to(ROOT).as_posix())
    assert not undeclared, f"add these to [tool.setuptools.package-data] in pyproject.toml: {undeclared}"
