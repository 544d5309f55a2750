"""The README's configuration table, generated from the Settings class (one row per setting, in its order).

    python -m mailer.settings_doc                    print the table
    python -m mailer.settings_doc --write README.md  replace the table between the markers in place
    python -m mailer.settings_doc --check README.md  exit 1 when the file's table is not the generated one

tests/deploy/test_settings_table.py keeps README.md equal to it.
"""

from __future__ import annotations

import argparse
import sys
import typing
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from mailer.settings import Settings

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"
REGENERATE = ".venv/bin/python -m mailer.settings_doc --write README.md"


def variable_name(model: type[BaseSettings], name: str, field: FieldInfo) -> str:
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return alias.upper() if alias else f"{model.model_config.get('env_prefix', '')}{name}".upper()


def default_text(field: FieldInfo) -> str:
    """The default as an operator would type it (lists comma-separated, booleans as true/false)."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path) and value.is_absolute():  # the installed package's folder: differs per machine
        return "(installed with the package)"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list | tuple):
        return f"`{','.join(str(item) for item in value)}`" if value else "(empty)"
    return f"`{value}`"


def choices(annotation: object) -> list[str]:
    """The allowed values of a Literal setting (also inside ``X | None``)."""
    if typing.get_origin(annotation) is Literal:
        return [str(arg) for arg in typing.get_args(annotation)]
    for arg in typing.get_args(annotation):
        if found := choices(arg):
            return found
    return []


def description_text(field: FieldInfo) -> str:
    text = " ".join((field.description or "").split())
    allowed = choices(field.annotation)
    if allowed:
        text = f"{text} (one of {', '.join(f'`{value}`' for value in allowed)})".strip()
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_table(model: type[BaseSettings] = Settings) -> str:
    lines = ["| Variable | Default | What it does |", "| --- | --- | --- |"]
    for name, field in model.model_fields.items():
        row = (f"`{variable_name(model, name, field)}`", default_text(field), description_text(field))
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"


def undescribed(model: type[BaseSettings] = Settings) -> list[str]:
    return [name for name, field in model.model_fields.items() if not (field.description or "").strip()]


def with_table(text: str, table: str) -> str:
    """``text`` with everything between the markers replaced by ``table``."""
    before, start, rest = text.partition(START)
    inside, end, after = rest.partition(END)
    if not start or not end:
        raise ValueError(f"the markers {START} and {END} are missing")
    return f"{before}{START}\n{table}{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailer.settings_doc", description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", metavar="FILE", type=Path, help="replace the table between the markers")
    action.add_argument("--check", metavar="FILE", type=Path, help="exit 1 when the table is out of date")
    args = parser.parse_args(argv)
    table = settings_table()
    if args.write is None and args.check is None:
        sys.stdout.write(table)
        return 0
    path: Path = args.write or args.check
    text = path.read_text(encoding="utf-8")
    wanted = with_table(text, table)
    if args.write is not None:
        if wanted != text:
            path.write_text(wanted, encoding="utf-8")
        return 0
    if wanted != text:
        print(f"{path}: the configuration table is out of date; regenerate it with: {REGENERATE}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
