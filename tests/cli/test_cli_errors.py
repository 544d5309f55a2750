"""The CLI's error mapping: failures outside the project's own error tree still end in one line."""

from __future__ import annotations

import sys

import pytest

from mailer.cli import main
from mailer.settings import get_settings


def test_unreachable_database_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    monkeypatch.setattr(sys, "argv", ["newsletter", "subscribers", "stats"])

    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        get_settings.cache_clear()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: database:") and "Connection refused" in err
    assert "Traceback" not in err and err.count("\n") == 1
