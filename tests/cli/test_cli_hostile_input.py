"""Input that used to end in a traceback or in a broken send, each now a one-line error with exit 2 (or
the exit code of its kind), run through the CLI's own entry point."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support.paths import REFERENCE_ISSUE

from mailer.cli import main
from mailer.settings import get_settings

PLACEHOLDER_ISSUE = "---\ntitle: T\n---\n\n## News\n\nHello {marker} there\n"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``cli(*args, **env) -> (exit code, stdout, stderr)`` in this process, in a folder of its own."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("NEWSLETTER_")]:
        monkeypatch.delenv(name)

    def run(*args: str, **env: str) -> tuple[int, str, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "argv", ["newsletter", *args])
        get_settings.cache_clear()
        code = 0
        try:
            main()
        except SystemExit as done:
            code = int(done.code or 0)
        finally:
            get_settings.cache_clear()
            for name in env:
                monkeypatch.delenv(name)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _one_line(result: tuple[int, str, str], code: int = 2) -> str:
    exit_code, _out, err = result
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert exit_code == code, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("marker", ["%%NL:bogus%%", "%%NL:email%%", "%%NL:bo\\_gus%%"])
def test_an_issue_holding_the_placeholder_syntax_is_refused_everywhere(cli, tmp_path, marker):
    issue = tmp_path / "issue.md"
    issue.write_text(PLACEHOLDER_ISSUE.format(marker=marker), encoding="utf-8")
    for args in (
        ["render", str(issue)],
        ["preview", str(issue)],
        ["send", str(issue), "--dry-run"],
        ["send", str(issue), "--test-to", "me@example.org"],
        ["send", str(issue)],
    ):
        line = _one_line(cli(*args))
        assert "placeholder" in line and "%%NL:" in line, (args, line)
    assert not (tmp_path / "var" / "outbox").exists(), "nothing was sent"


@pytest.mark.parametrize(
    ("front", "problem"),
    [
        ("title: T\ndate: 2024-13-45", "month must be in 1..12"),
        ('title: "A\\0B"', "the title contains the control character U+0000"),
        ('title: T\ndescription: "x\\x07y"', "the description contains the control character U+0007"),
    ],
)
def test_impossible_front_matter_is_an_input_error(cli, tmp_path, front, problem):
    issue = tmp_path / "issue.md"
    issue.write_text(f"---\n{front}\n---\n\n## News\n\nHi\n", encoding="utf-8")
    assert problem in _one_line(cli("render", str(issue)))


def test_numbers_beyond_64_bits_and_bad_limits_are_one_line_errors(cli):
    assert "9223372036854775807" in _one_line(cli("campaigns", "show", "99999999999999999999"))
    assert "no subscriber with id" in _one_line(cli("subscribers", "show", "99999999999999999999"), code=3)
    for limit in ("0", "-5", "100000000000000000000000"):
        line = _one_line(cli("subscribers", "list", "--limit", limit))
        assert "limit" in line
    assert "valid integer" in _one_line(cli("campaigns", "list", "--limit", "lots"))
    assert "No such command" in _one_line(cli("bogus"))


@pytest.mark.parametrize(
    ("at", "problem"),
    [
        ("9999-12-31T23:59-12:00", "beyond the calendar"),
        ("2099-01-01T09:00+08:00", "more than a year ahead"),
        ("2030-01-01T09:00+25:00", "not an ISO time"),
    ],
)
def test_a_schedule_time_out_of_range_is_refused(cli, at, problem):
    assert problem in _one_line(cli("send", str(REFERENCE_ISSUE), "--at", at))


def test_a_malformed_setting_names_its_variable(cli):
    line = _one_line(cli("campaigns", "list", NEWSLETTER_BATCH_SIZE="abc"))
    assert line.startswith("error: NEWSLETTER_BATCH_SIZE:") and "'abc'" in line
    line = _one_line(cli("campaigns", "list", NEWSLETTER_TRANSPORT="pigeon"))
    assert line.startswith("error: NEWSLETTER_TRANSPORT:")


def test_the_rejects_file_is_checked_before_anything_is_imported(cli, tmp_path):
    source = tmp_path / "list.csv"
    source.write_text("email\nann@example.org\nnot-an-address\n", encoding="utf-8")
    assert "is a folder" in _one_line(cli("subscribers", "import", str(source), "--rejects", str(tmp_path)))
    keep = tmp_path / "keep.csv"
    keep.write_text("precious\n", encoding="utf-8")
    assert "already exists" in _one_line(cli("subscribers", "import", str(source), "--rejects", str(keep)))
    assert keep.read_text(encoding="utf-8") == "precious\n", "never overwritten"
    missing = tmp_path / "no" / "such" / "rejects.csv"
    assert "does not exist" in _one_line(cli("subscribers", "import", str(source), "--rejects", str(missing)))
    code, out, _ = cli("subscribers", "list")
    assert code == 0 and "ann@example.org" not in out, "refused before the first row was imported"
    code, out, _ = cli("subscribers", "import", str(source), "-q")
    assert code == 0 and "rejected 1" in out


def test_a_campaign_that_cannot_resume_says_so_before_any_progress(cli):
    code, _out, _err = cli("send", str(REFERENCE_ISSUE), "--override")  # nobody to send to: a check fails
    assert code == 0
    exit_code, out, err = cli("campaigns", "resume", "1")
    assert "only a paused campaign" in _one_line((exit_code, out, err), code=4)
    assert "━" not in err and "sent" not in out, "no progress bar for a campaign that did not resume"
    assert "between 0 and" in _one_line(cli("subscribers", "list", "--after", "99999999999999999999"))
    assert "before must be a campaign id" in _one_line(cli("campaigns", "list", "--before", "0"))
