"""The lock files hold what pyproject.toml asks for, every pin carries hashes, the runtime lock is the test
lock's runtime part with nothing of the test tools, and this environment is what the lock says."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.paths import PROJECT_ROOT

RUNTIME_LOCK = PROJECT_ROOT / "requirements.lock"
TEST_LOCK = PROJECT_ROOT / "requirements-test.lock"
RELOCK = "pyproject.toml and the lock files differ: run scripts/lock and commit requirements*.lock"
# name==version [; marker] \ then its hash lines
PIN = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?: ; ([^\\]+?))? \\$"
    r"((?:\n    --hash=sha256:[0-9a-f]{64}(?: \\)?)+)",
    re.M,
)


def pins(path) -> dict[str, tuple[str, str | None, int]]:
    """name -> (version, marker, number of hashes)."""
    text = path.read_text(encoding="utf-8")
    found: dict[str, tuple[str, str | None, int]] = {
        canonicalize_name(m[1]): (m[2], m[3], m[4].count("--hash=")) for m in PIN.finditer(text)
    }
    requirement_lines = re.findall(r"^[A-Za-z0-9]", text, re.M)
    assert len(found) == len(requirement_lines), f"{path.name}: a requirement without == or hashes"
    return found


def project() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]


def applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": ""})


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        (RUNTIME_LOCK, lambda p: p["dependencies"]),
        (TEST_LOCK, lambda p: p["dependencies"] + p["optional-dependencies"]["test"]),
    ],
    ids=["runtime", "test"],
)
def test_the_lock_pins_every_dependency_of_pyproject(lock, requirements):
    pinned = pins(lock)
    for line in requirements(project()):
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock.name} lacks {requirement}: {RELOCK}"
        assert requirement.specifier.contains(pinned[name][0], prereleases=True), (
            f"{lock.name} pins {name}=={pinned[name][0]}, pyproject.toml asks {requirement}: {RELOCK}"
        )


def test_every_pin_has_hashes_and_the_header_names_the_command():
    for lock in (RUNTIME_LOCK, TEST_LOCK):
        assert all(count >= 1 for _, _, count in pins(lock).values())
        assert "#    scripts/lock\n" in lock.read_text(encoding="utf-8")[:200], (
            f"{lock.name}: not from scripts/lock"
        )


def test_the_runtime_lock_is_the_test_locks_runtime_part():
    runtime, test = pins(RUNTIME_LOCK), pins(TEST_LOCK)
    assert set(runtime) <= set(test)
    assert {name: runtime[name][0] for name in runtime} == {name: test[name][0] for name in runtime}
    test_tools = {canonicalize_name(Requirement(r).name) for r in project()["optional-dependencies"]["test"]}
    runtime_names = {canonicalize_name(Requirement(r).name) for r in project()["dependencies"]}
    assert not (test_tools - runtime_names) & set(runtime), "a test tool in the image's lock"


def test_this_environment_is_the_locked_one():
    """What the tests run on is what the lock says (scripts/bootstrap --test installs it)."""
    differ = []
    for name, (pinned, marker, _) in pins(TEST_LOCK).items():
        if marker and not Requirement(f"{name}; {marker}").marker.evaluate():  # type: ignore[union-attr]
            continue
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        if installed != pinned:
            differ.append(f"{name}: locked {pinned}, installed {installed}")
    assert not differ, "scripts/bootstrap --test reinstalls from the lock:\n" + "\n".join(differ)
