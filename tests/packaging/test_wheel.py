"""The package as a new user gets it: a wheel built from this tree, installed into a fresh virtual
environment, run from a folder outside the checkout (issue 8: templates, the topic registry, migrations
and the demo's sample data must all travel inside the wheel)."""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import venv
from pathlib import Path

import pytest
from support.paths import PROJECT_ROOT, REFERENCE_ISSUE
from support.services import free_port
from support.waiting import wait_for_start

pytestmark = pytest.mark.slow


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(the fresh venv's bin folder, an environment without this checkout or any NEWSLETTER_ setting)."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "PYTHON", "VIRTUAL_ENV"))}
    # build from a copy of what git tracks: what a clean clone holds, and no build/ left in the checkout
    source = root / "source"
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        if (PROJECT_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, source / name)
    dist = root / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)],
        root,
        env,
    )
    (wheel,) = dist.glob("newsletter_pipeline-*.whl")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    bin_dir = root / "venv" / "bin"
    _run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)], root, env)
    return bin_dir, env


def test_the_installed_wheel_renders_migrates_and_runs_the_demo_outside_the_checkout(installed, tmp_path):
    bin_dir, env = installed
    port = free_port()
    env = {**env, "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}"}  # the demo's links, and serve's
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    newsletter = str(bin_dir / "newsletter")

    # nothing is read from the source tree: the package's own files are under site-packages
    where = _run(
        [str(bin_dir / "python"), "-c", "import mailer.templates as t; print(t.__file__)"], elsewhere, env
    )
    assert "site-packages" in where and str(PROJECT_ROOT) not in where

    rendered = _run([newsletter, "render", str(REFERENCE_ISSUE), "--out", "out"], elsewhere, env)
    assert "Subject:" in rendered
    html = (elsewhere / "out" / "email.html").read_text(encoding="utf-8")
    assert "OpenStack社区动态样刊第六期" in html and "Nova" in html
    assert (elsewhere / "out" / "email.txt").stat().st_size > 1000

    upgraded = _run([newsletter, "db", "upgrade"], elsewhere, env)
    assert "database at revision" in upgraded and (elsewhere / "var" / "newsletter.db").is_file()

    demo = _run([newsletter, "demo"], elsewhere, env)
    assert "failed 0" in demo and "suppressed (hard_bounce)" in demo and "suppressed (complaint)" in demo
    emails = sorted((elsewhere / "var" / "outbox").glob("*.eml"))
    assert len(emails) >= 20

    # the web side from the installed package answers every link of a sent email
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [newsletter, "serve", "--port", str(port)], cwd=elsewhere, env=env,
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_start(server, lambda: _answers(base + "/healthz") == 200, what="newsletter serve", log=log)
        message = email.message_from_bytes(emails[2].read_bytes(), policy=email.policy.default)
        text = message.get_body(("plain",)).get_content()
        links = set(re.findall(rf"{re.escape(base)}[^\s<>\"]*", text))
        assert len(links) >= 4 and {_answers(link) for link in links} == {200}, links
        assert _answers(base + "/static/site.css") == 200
    finally:
        server.terminate()
        server.wait(10)


def _answers(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_the_installed_wheel_has_the_celery_app(installed, tmp_path):
    """`celery -A mailer.worker` where only the wheel is installed (the image, a worker host): no worker.py
    in the folder, the app and its tasks come from the package."""
    bin_dir, env = installed
    empty = tmp_path / "empty"
    empty.mkdir()
    report = _run([str(bin_dir / "celery"), "-A", "mailer.worker", "report"], empty, env)
    assert "software -> celery:" in report and "broker_url: 'memory://" in report
    tasks = _run(
        [str(bin_dir / "python"), "-c", "from mailer.worker import app; print(sorted(app.tasks))"], empty, env
    )
    assert all(
        f"'mailer.tasks.{name}'" in tasks for name in ("send_batch", "start_campaign", "reap", "start_due")
    )
    assert list(empty.iterdir()) == []
