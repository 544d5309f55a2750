"""The shape of the code base, held by tests: what is packaged, which way imports go."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from support.paths import PROJECT_ROOT


def _python_files(package: str) -> list[Path]:
    return sorted((PROJECT_ROOT / package).rglob("*.py"))


def test_every_package_on_disk_is_listed_for_the_wheel():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    # the template folders (no __init__.py: data, installed as mailer.templates.*)
    on_disk = {"mailer.templates"} | {
        "mailer.templates." + ".".join(p.relative_to(PROJECT_ROOT / "templates").parts)
        for p in (PROJECT_ROOT / "templates").rglob("*")
        if p.is_dir() and p.name != "__pycache__"
    }
    for top in ("mailer", "subscribers"):
        for init in (PROJECT_ROOT / top).rglob("__init__.py"):
            on_disk.add(".".join(init.parent.relative_to(PROJECT_ROOT).parts))
    on_disk |= {"subscribers.migrations", "subscribers.migrations.versions"}  # Alembic's folders
    assert listed == on_disk
    assert config["package-dir"] == {"mailer.templates": "templates"}


def test_subscribers_never_imports_mailer():
    for path in _python_files("subscribers"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("mailer"), f"{path.relative_to(PROJECT_ROOT)} imports {name}"


def test_only_settings_reads_the_environment():
    for top in ("mailer", "subscribers"):
        for path in _python_files(top):
            if path.name == "settings.py":
                continue
            text = path.read_text(encoding="utf-8")
            assert "os.environ" not in text and "getenv" not in text, path.relative_to(PROJECT_ROOT)


MAX_LINES = 500  # a module a reader can hold; functions are held to complexity 20 by ruff (C901)


def test_no_module_is_longer_than_a_reader_can_hold():
    long = {
        str(path.relative_to(PROJECT_ROOT)): lines
        for top in ("mailer", "subscribers")
        for path in _python_files(top)
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these along their jobs (over {MAX_LINES} lines): {long}"
