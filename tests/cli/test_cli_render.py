"""``newsletter render`` and ``newsletter preview``.

The main cases run the real console script in subprocesses; the interpreter starts slowly (about a
second), so they are all started at once in a module fixture and each test then checks its own exit
status, stdout and stderr. The many bad-input files go through ``mailer.cli.main`` in-process (same
argument parsing and error mapping, real exit status and stderr), and one of them also as a subprocess.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.paths import PROJECT_ROOT, REFERENCE_ISSUE, TYPO_ISSUE

from mailer.cli import main

SCRIPT = Path(sys.executable).parent / "newsletter"
GOOD_FRONT = "---\ntitle: 第一期\n---\n"


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str


def _bad_inputs(folder: Path) -> dict[str, Path]:
    files = {
        "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "not-utf8": (GOOD_FRONT + "## 标题\n正文\n").encode("gb18030"),
        "no-front-matter": "## 标题\n正文\n".encode(),
        "broken-front-matter": b"---\ntitle: [unclosed\n---\n## A\nx\n",
        "no-title": b"---\ndescription: x\n---\n## A\nx\n",
        "empty-body": GOOD_FRONT.encode() + b"\n  \n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.md"
        paths[name].write_bytes(data)
    paths["missing"] = folder / "missing.md"
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    if not SCRIPT.exists():
        pytest.skip(f"console script {SCRIPT} is not installed")
    root = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_DATA_DIR=str(root / "var"), NEWSLETTER_NAME="OpenStack社区动态")
    broken_templates = root / "templates"
    shutil.copytree(PROJECT_ROOT / "templates" / "email", broken_templates / "email")
    (broken_templates / "email" / "newsletter.mjml.j2").write_text(
        "<mjml><mj-body><mj-section>", encoding="utf-8"
    )
    reference = str(REFERENCE_ISSUE)
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "nova": (["render", reference, "--topics", "nova", "--out", str(root / "nova")], env),
        "default": (["render", reference, "--out", str(root / "all")], env),
        "typo": (["render", str(TYPO_ISSUE), "--out", str(root / "typo")], env),
        "typo-strict": (["render", str(TYPO_ISSUE), "--strict", "--out", str(root / "strict")], env),
        "preview": (["preview", reference, "--out", str(root / "preview")], env),
        "template": (["render", reference], {**env, "NEWSLETTER_TEMPLATES_DIR": str(broken_templates)}),
    }
    cases["bad:missing"] = (["render", str(root / "missing.md")], env)
    processes = {
        name: subprocess.Popen(
            [str(SCRIPT), *args],
            cwd=root,
            env=case_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, case_env) in cases.items()
    }
    results = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=120)
        results[name] = Run(cases[name][0], process.returncode, out, err)
    results["_root"] = Run([], 0, str(root), "")
    return results


def _one_line_error(run: Run) -> str:
    assert run.code == 2, run
    assert "Traceback" not in run.err and run.out == "", run
    lines = [line for line in run.err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.err
    return lines[0]


@pytest.mark.slow
def test_render_for_nova_writes_both_parts_and_reports(runs: dict[str, Run]) -> None:
    run = runs["nova"]
    assert run.code == 0, run.err
    assert "OpenStack社区动态样刊第六期(05.29-06.12)" in run.out
    assert "Sections: 业界动态 · 社区跟踪 · Common · Nova\n" in run.out
    folder = Path(runs["_root"].out) / "nova"
    html = (folder / "email.html").read_text(encoding="utf-8")
    text = (folder / "email.txt").read_text(encoding="utf-8")
    assert "resize-inplace" in html and "resize-inplace" in text
    assert "flaky-finder" not in html and "flaky-finder" not in text  # the Tempest section's
    assert "%%NL:unsubscribe_url%%" in html and "OpenStack社区动态" in html


@pytest.mark.slow
def test_render_defaults_to_all_topics(runs: dict[str, Run]) -> None:
    run = runs["default"]
    assert run.code == 0, run.err
    assert "Segment:  ceilometer, neutron, nova, tempest" in run.out
    html = (Path(runs["_root"].out) / "all" / "email.html").read_text(encoding="utf-8")
    assert "flaky-finder" in html and "resize-inplace" in html


def run_main(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setattr(sys, "argv", ["newsletter", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return Run(args, int(exit_info.value.code or 0), captured.out, captured.err)


def test_topics_and_all_together_is_a_usage_error(capsys, monkeypatch) -> None:
    run = run_main(["render", str(REFERENCE_ISSUE), "--topics", "nova", "--all"], capsys, monkeypatch)
    assert "--topics or --all" in _one_line_error(run)


def test_unknown_topic_is_an_error_with_a_suggestion(capsys, monkeypatch) -> None:
    run = run_main(["render", str(REFERENCE_ISSUE), "--topics", "novva"], capsys, monkeypatch)
    assert "unknown topic 'novva' (did you mean nova?)" in _one_line_error(run)


@pytest.mark.slow
def test_heading_typo_is_a_warning_and_strict_makes_it_an_error(runs: dict[str, Run]) -> None:
    run = runs["typo"]
    assert run.code == 0, run.err
    assert "Tempst: did you mean Tempest?" in run.err and run.err.startswith("warning:")
    assert "Warnings: 1" in run.out
    line = _one_line_error(runs["typo-strict"])
    assert str(TYPO_ISSUE) in line and "--strict" in line


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("missing", "file not found"),
        ("binary", "binary file"),
        ("not-utf8", "not UTF-8"),
        ("no-front-matter", "no YAML front matter"),
        ("broken-front-matter", "broken front matter"),
        ("no-title", "no title"),
        ("empty-body", "no body"),
    ],
)
def test_bad_issue_files_are_one_line_errors_with_status_2(
    case: str, problem: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    path = _bad_inputs(tmp_path)[case]
    for command in ("render", "preview"):
        line = _one_line_error(
            run_main([command, str(path), "--out", str(tmp_path / "out")], capsys, monkeypatch)
        )
        assert f"{case}.md" in line and problem in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_console_script_maps_errors_too(runs: dict[str, Run]) -> None:
    line = _one_line_error(runs["bad:missing"])
    assert "missing.md: file not found" in line


@pytest.mark.slow
def test_a_template_mjml_rejects_is_a_one_line_error(runs: dict[str, Run]) -> None:
    line = _one_line_error(runs["template"])
    assert re.search(r"templates/email/newsletter\.mjml\.j2: MJML rejected the template", line)


@pytest.mark.slow
def test_preview_writes_an_index_and_two_frames_per_segment(runs: dict[str, Run]) -> None:
    run = runs["preview"]
    assert run.code == 0, run.err
    folder = Path(runs["_root"].out) / "preview"
    index = (folder / "index.html").read_text(encoding="utf-8")
    slugs = re.findall(r'<a href="([a-z-]+)\.html">', index)
    assert slugs == ["all", "topic-ceilometer", "topic-neutron", "topic-nova", "topic-tempest", "general"]
    for slug in slugs:
        page = (folder / f"{slug}.html").read_text(encoding="utf-8")
        frames = re.findall(r'<iframe src="email-' + slug + r'\.html" width="(\d+)"', page)
        assert frames == ["600", "375"]
        email = (folder / f"email-{slug}.html").read_text(encoding="utf-8")
        assert "%%NL:" not in email and "reader@example.org" in email
    general = (folder / "email-general.html").read_text(encoding="utf-8")
    assert "业界动态" in general and "resize-inplace" not in general
