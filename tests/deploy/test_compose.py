"""docker-compose.yml without a Docker engine: every service's command parses as a command the image has
(a console script of the package or of a locked dependency, with its subcommands and options), every
NEWSLETTER_ variable it or its env file sets is a setting, and what the file promises operators holds."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from support.paths import PROJECT_ROOT

from mailer.settings import Settings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / "deploy" / "newsletter.env.example"
APP_SERVICES = ("migrate", "web", "worker", "beat")
PREFIX = str(Settings.model_config.get("env_prefix", ""))
KNOWN_VARIABLES = {f"{PREFIX}{name}".upper() for name in Settings.model_fields}


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def interpolated(value: str) -> str:
    """A compose value with ${VAR:-default} as its default and ${VAR:?error} / ${VAR} as a stand-in."""
    value = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
    value = re.sub(r"\$\{[A-Z0-9_]+(:?\?[^}]*)?\}", "x" * 32, value)
    return value.replace("$$", "$")


def env_file_lines(path: Path) -> dict[str, str]:
    """NAME=value lines, including the commented-out examples (``# NAME=value``)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match[1]] = match[2]
    return found


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


# --- commands ------------------------------------------------------------------------------------------


def console_script_providers() -> dict[str, str]:
    """Console script -> the distribution that installs it, for the package and the runtime lock."""
    locked = {
        match[1].lower().replace("_", "-")
        for match in re.finditer(
            r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", (PROJECT_ROOT / "requirements.lock").read_text(), re.M
        )
    }
    scripts = {}
    for point in entry_points(group="console_scripts"):
        dist = point.dist.name.lower().replace("_", "-") if point.dist else ""
        if dist in locked:
            scripts[point.name] = dist
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    scripts.update(dict.fromkeys(project["scripts"], project["name"]))
    return scripts


def worker_module() -> ModuleType:
    """The checkout's worker.py, loaded from its file (as `celery -A worker` does from the checkout)."""
    spec = importlib.util.spec_from_file_location("worker", PROJECT_ROOT / "worker.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checkouts_worker_py_is_the_packages_app():
    import mailer.worker

    assert worker_module().app is mailer.worker.app


def click_command(script: str) -> Any:
    """The Click (or Typer's vendored Click) command behind a console script."""
    if script == "newsletter":
        import typer

        from mailer import cli

        cli.load_commands()
        return typer.main.get_command(cli.app)
    if script == "celery":  # its console script is a function around this group
        from celery.bin.celery import celery

        return celery
    target = next(p for p in entry_points(group="console_scripts") if p.name == script).load()
    assert hasattr(target, "make_context"), f"{script}: not a Click command"
    return target


def parse(command: Any, argv: list[str], obj: object = None) -> list[tuple[str, dict[str, Any]]]:
    """Parse argv as the command would (subcommands, options, their types) without running it: one
    (command name, parameters) per level; a misspelt subcommand or option raises."""
    name, args = argv[0], argv[1:]
    levels = []
    parent = None
    while True:
        ctx = command.make_context(name, list(args), parent=parent, obj=obj)
        levels.append((name, dict(ctx.params)))
        if not hasattr(command, "get_command"):
            return levels
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        assert rest, f"{' '.join(argv)}: {name} needs a subcommand"
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"{' '.join(argv)}: {name} has no command {rest[0]!r}"
        command, name, args, parent = sub, rest[0], rest[1:], ctx


def check_entry_point(argv: list[str]) -> list[tuple[str, dict[str, Any]]]:
    scripts = console_script_providers()
    assert argv[0] in scripts, f"{argv[0]} is neither the package's console script nor a locked dependency's"
    obj = None
    if argv[0] == "celery":
        from celery import Celery
        from celery.bin.base import CLIContext

        # the image holds the installed package, not a checkout: the app is named by its module
        assert argv[1:3] == ["-A", "mailer.worker"], "the image's Celery app: celery -A mailer.worker ..."
        app = importlib.import_module(argv[2]).app
        assert isinstance(app, Celery)
        obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    levels = parse(click_command(argv[0]), argv, obj)
    if argv[0] == "uvicorn":
        from uvicorn.importer import import_from_string

        params = levels[0][1]
        assert params["factory"], "create_app builds the app from settings: uvicorn needs --factory"
        assert callable(import_from_string(params["app"]))
    return levels


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_app_service_runs_an_entry_point_of_the_image(name):
    command = service(name)["command"]
    assert isinstance(command, list), "exec form: the process gets the signals, no shell in between"
    check_entry_point([interpolated(part) for part in command])


def test_the_commands_are_the_ones_each_service_is_for():
    assert service("migrate")["command"] == ["newsletter", "db", "upgrade"]
    assert check_entry_point(service("web")["command"])[0][1]["app"] == "mailer.web.app:create_app"
    assert [level for level, _ in check_entry_point(service("worker")["command"])] == ["celery", "worker"]
    assert [level for level, _ in check_entry_point(service("beat")["command"])] == ["celery", "beat"]


def test_the_worker_health_check_is_a_celery_command_too():
    test = service("worker")["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    argv = [part for part in shlex.split(interpolated(test[1])) if not part.startswith(">")]
    assert [level for level, _ in check_entry_point(argv)] == ["celery", "inspect"]


def test_the_web_health_check_asks_a_route_of_the_app(tmp_path):
    from mailer.web.app import create_app

    check = " ".join(service("web")["healthcheck"]["test"])
    path = re.search(r"http://127\.0\.0\.1:8000(/[\w/]*)", check)
    assert path, check
    app = create_app(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    assert path[1] in {getattr(route, "path", None) for route in app.routes}


def test_a_misspelt_command_is_caught():
    """The checks above can fail: a wrong subcommand, option or factory path does."""
    for argv in (
        ["newsletter", "db", "upgrad"],
        ["celery", "-A", "mailer.worker", "worker", "-P", "sol"],
        ["celery", "-A", "worker", "worker", "-P", "solo"],  # worker.py is not in the image
        ["uvicorn", "--factory", "mailer.web.app:no_such_factory"],
        ["uvicorn", "--factroy", "mailer.web.app:create_app"],
        ["gunicorn", "mailer.web.app:create_app"],
    ):
        with pytest.raises(Exception):  # noqa: B017 - Click, import and assertion errors alike
            check_entry_point(argv)


# --- settings --------------------------------------------------------------------------------------------


def test_every_newsletter_variable_compose_sets_is_a_setting():
    set_here = {
        variable
        for name in compose()["services"]
        for variable in environment(name)
        if variable.startswith(PREFIX)
    }
    assert set_here, "the app services get their wiring from docker-compose.yml"
    assert set_here <= KNOWN_VARIABLES, sorted(set_here - KNOWN_VARIABLES)


def test_every_newsletter_variable_of_the_env_file_is_a_setting():
    for name in APP_SERVICES:
        assert service(name)["env_file"] == ".env", "README: cp deploy/newsletter.env.example .env"
    example = {k: v for k, v in env_file_lines(ENV_EXAMPLE).items() if k.startswith(PREFIX)}
    assert {"NEWSLETTER_SECRET_KEY", "NEWSLETTER_BASE_URL", "NEWSLETTER_SENDER_ADDRESS"} <= set(example)
    assert set(example) <= KNOWN_VARIABLES, sorted(set(example) - KNOWN_VARIABLES)


def test_the_example_values_and_the_wiring_are_valid_settings():
    """Everything an operator gets by uncommenting the example, plus compose's own values, validates."""
    values = {k: v for k, v in env_file_lines(ENV_EXAMPLE).items() if k.startswith(PREFIX) and v}
    for name in APP_SERVICES:
        values |= {k: interpolated(v) for k, v in environment(name).items() if k.startswith(PREFIX)}
    fields = {key.removeprefix(PREFIX).lower(): value for key, value in values.items()}
    settings = Settings(_env_file=None, **fields)  # type: ignore[arg-type]
    assert settings.broker_url == "redis://redis:6379/0"
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")


def test_the_secret_key_is_required_and_the_web_port_stays_on_loopback():
    for name in APP_SERVICES:
        assert re.fullmatch(r"\$\{NEWSLETTER_SECRET_KEY:\?.+\}", environment(name)["NEWSLETTER_SECRET_KEY"])
    assert env_file_lines(ENV_EXAMPLE)["NEWSLETTER_SECRET_KEY"] == "", "each deployment makes its own"
    assert environment("web")["FORWARDED_ALLOW_IPS"] == "${FORWARDED_ALLOW_IPS:-127.0.0.1}"
    assert all(str(port).startswith("127.0.0.1:") for port in service("web")["ports"])


# --- shape -----------------------------------------------------------------------------------------------


def test_the_app_services_build_the_dockerfile_and_wait_for_the_migration():
    for name in APP_SERVICES:
        assert service(name)["build"] in (".", {"context": "."}) and (PROJECT_ROOT / "Dockerfile").is_file()
    assert service("migrate")["restart"] == "no"
    for name in ("web", "worker", "beat"):
        assert service(name)["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_health_checks_and_named_volumes():
    services = compose()["services"]
    assert {"redis", "postgres", "web", "worker"} <= {n for n, s in services.items() if "healthcheck" in s}
    for name, spec in services.items():
        for needed, condition in (spec.get("depends_on") or {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits for {needed}'s health check"
    declared = set(compose()["volumes"])
    used = {volume.split(":")[0] for spec in services.values() for volume in spec.get("volumes", [])}
    assert used == declared == {"data", "redis", "postgres"}
