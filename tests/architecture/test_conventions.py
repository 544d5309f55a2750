"""Conventions the code base keeps, checked on its source (see mailer/services/env.py):

- the CLI is a thin client: no SQL, no database session work, no private helper of another command module;
- a unit-of-work function (it takes a ``Session``) never commits; a function that commits is a
  multi-step one, takes a session factory (or the AppEnv holding one) and says so: ``*_stepwise``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from support.paths import PROJECT_ROOT

CLI = PROJECT_ROOT / "mailer" / "cli"
WEB = PROJECT_ROOT / "mailer" / "web"
SQL_FUNCTIONS = {"select", "text", "insert", "update", "delete"}  # sqlalchemy's statement builders
SESSION_METHODS = {"execute", "scalar", "scalars", "commit", "flush", "add", "get"}
# the database layer itself (engines, migrations, the registry sync on first open) commits as it must
DATABASE_LAYER = {PROJECT_ROOT / "mailer" / "database.py", PROJECT_ROOT / "subscribers" / "db.py"}


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (PROJECT_ROOT / folder).rglob("*.py"))


def _functions(path: Path) -> list[ast.FunctionDef]:
    """The module's functions and methods, without those nested in a ``*_stepwise`` function (its
    helpers: their commits are its own)."""
    found: list[ast.FunctionDef] = []
    pending: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef):
            found.append(node)
            if node.name.endswith("_stepwise"):
                continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def _annotation(arg: ast.arg) -> str:
    return ast.unparse(arg.annotation) if arg.annotation is not None else ""


def _calls(function: ast.FunctionDef, method: str) -> bool:
    """Whether the function's own body (not nested functions') calls ``<something>.method(...)``."""
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method:
            return True
        pending.extend(ast.iter_child_nodes(node))
    return False


def test_the_front_ends_hold_no_sql_and_no_session_work():
    """The CLI and the web app's routers parse, call a service and print or render."""
    for path in sorted([*CLI.glob("*.py"), *WEB.glob("*.py")]):
        text = path.read_text(encoding="utf-8")
        found = re.search(r"(?<![\w.])(select|text)\(|session\.execute", text)
        assert found is None, (
            f"{path.name} contains {found and found.group(0)!r}: SQL belongs in the services"
        )
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                assert not (isinstance(func, ast.Name) and func.id in SQL_FUNCTIONS), (
                    f"{path.name}:{node.lineno} builds SQL ({func.id})"  # type: ignore[union-attr]
                )
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                    assert not (func.value.id == "session" and func.attr in SESSION_METHODS), (
                        f"{path.name}:{node.lineno} works the session itself (session.{func.attr})"
                    )
            if isinstance(node, ast.ImportFrom) and node.module:
                session_type = node.module == "sqlalchemy.orm" and [a.name for a in node.names] == ["Session"]
                assert session_type or not node.module.startswith("sqlalchemy"), (
                    f"{path.name} imports {node.module}"
                )
                assert not node.module.startswith(("mailer.sending", "subscribers.store")), (
                    f"{path.name} imports {node.module}: front ends call mailer.services"
                )
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("sqlalchemy") for a in node.names), path.name


def test_command_modules_import_no_private_helper_of_another():
    commands = {p.stem for p in CLI.glob("*_cmds.py")}
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mailer.cli."):
                other = node.module.rsplit(".", 1)[1]
                if other in commands:
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, f"{path.name} imports {private} from {other}"


def test_unit_of_work_functions_never_commit():
    offenders = []
    for path in _modules("mailer", "subscribers"):
        if path.name == "env.py":  # it provides the transactions: begins, commits and ends them
            continue
        for function in _functions(path):
            takes_session = any(
                _annotation(a) == "Session" for a in function.args.args + function.args.kwonlyargs
            )
            if takes_session and _calls(function, "commit"):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{function.lineno} {function.name}")
    assert offenders == [], "functions taking a Session must leave the commit to their caller"


def test_functions_that_commit_say_so_in_their_names():
    offenders = []
    for path in _modules("mailer", "subscribers"):
        # the CLI and a web request own their transactions (env.transaction()), env.py provides them,
        # the database layer; the admin authentication notes a token's use in a short transaction of its
        # own (held for the whole request, that write would lock SQLite for the route's own writes)
        if (
            path.parent == CLI
            or path in (WEB / "deps.py", WEB / "admin" / "auth.py")
            or path.name == "env.py"
            or path in DATABASE_LAYER
        ):
            continue
        for function in _functions(path):
            commits = _calls(function, "commit") or _calls(function, "transaction")
            factory = any(
                _annotation(a).startswith("sessionmaker")
                for a in function.args.args + function.args.kwonlyargs
            )
            if (commits or factory) and not function.name.endswith("_stepwise"):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{function.lineno} {function.name}")
    assert offenders == [], "a multi-step function takes a session factory and is named *_stepwise"


# what opens a read-write session: the dependency, and the blocks a route (or its helper) opens itself
WRITE_SESSION_TYPES = {"DbSession"}
WRITE_SESSION_CALLS = {"request_transaction", "transaction", "sessions"}


def _get_routes(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The functions of a module declared as GET routes (``@router.get(...)``, ``@app.get(...)``)."""
    return [
        node
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(
            isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "get"
            for d in node.decorator_list
        )
    ]


def _opens_a_write_session(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in WRITE_SESSION_CALLS:
                return f"{name}()"
    return None


def test_get_routes_take_a_read_only_session():
    """A GET never changes anything (mail scanners follow every link): a GET route of any router (reader
    pages, the admin dashboard, the API, operations) takes ``ReadSession`` or opens ``read_only(env)``,
    never ``DbSession``, ``request_transaction``, ``env.transaction()`` or ``env.sessions()``."""
    routers = sorted(WEB.rglob("*.py"))
    assert WEB / "admin" / "dashboard.py" in routers and WEB / "admin" / "api_people.py" in routers
    offenders = []
    for path in routers:
        for route in _get_routes(path):
            where = f"{path.relative_to(PROJECT_ROOT)}:{route.lineno} GET {route.name}"
            args = route.args.args + route.args.kwonlyargs
            written = WRITE_SESSION_TYPES & {_annotation(a) for a in args}
            if written:
                offenders.append(f"{where} takes {', '.join(written)}")
            opened = _opens_a_write_session(route)
            if opened:
                offenders.append(f"{where} opens a read-write session: {opened}")
    assert offenders == [], "GET routes take ReadSession or read_only(env)"
