"""README's configuration table is the one mailer.settings_doc generates from mailer/settings.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.paths import PROJECT_ROOT

from mailer import settings_doc
from mailer.settings import Settings

README = PROJECT_ROOT / "README.md"


def test_every_setting_has_a_description():
    assert settings_doc.undescribed() == [], (
        "give each of these a Field(description=...) in mailer/settings.py"
    )


def test_the_readme_table_is_the_generated_one():
    text = README.read_text(encoding="utf-8")
    assert text.count(settings_doc.START) == 1 and text.count(settings_doc.END) == 1
    current = text.partition(settings_doc.START)[2].partition(settings_doc.END)[0]
    assert current == "\n" + settings_doc.settings_table(), (
        f"README.md's configuration table differs from mailer/settings.py; regenerate it with: "
        f"{settings_doc.REGENERATE}"
    )


def test_a_row_per_setting_with_its_variable_default_and_choices():
    table = settings_doc.settings_table()
    rows = table.splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)
    assert "| `NEWSLETTER_TRANSPORT` | `file` | How messages leave (one of `file`, `ses`, `smtp`) |" in rows
    assert any(row.startswith("| `NEWSLETTER_REPLY_TO` | (unset) |") for row in rows)
    assert any(row.startswith("| `NEWSLETTER_SNS_TOPIC_ARNS` | (empty) |") for row in rows)
    assert any(row.startswith("| `NEWSLETTER_SNS_CHECK_CERTIFICATE_DATES` | `true` |") for row in rows)
    assert any(
        row.startswith("| `NEWSLETTER_TEMPLATES_DIR` | (installed with the package) |") for row in rows
    )


def test_check_fails_on_a_stale_copy_and_write_repairs_it(tmp_path: Path, capsys: pytest.CaptureFixture):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\n{settings_doc.START}\n| old |\n{settings_doc.END}\n\nafter\n", encoding="utf-8"
    )
    assert settings_doc.main(["--check", str(readme)]) == 1
    assert settings_doc.REGENERATE in capsys.readouterr().out
    assert settings_doc.main(["--write", str(readme)]) == 0
    assert settings_doc.main(["--check", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8").endswith(f"{settings_doc.END}\n\nafter\n")
    with pytest.raises(ValueError, match="markers"):
        settings_doc.with_table("no markers here", "| t |\n")
