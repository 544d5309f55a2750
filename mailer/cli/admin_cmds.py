"""``newsletter admin create-user|set-password|users|create-token|tokens|revoke-token``: the dashboard's and
the admin API's accounts, as a thin client of mailer.services.admins."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from mailer.cli.app import app, console, environment, err_console, say
from mailer.cli.output import when
from mailer.errors import InputError
from mailer.services import admins

admin_app = typer.Typer(help="Admin users and API tokens of the dashboard and /api.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")

UserName = Annotated[str, typer.Argument(help="Admin user name (a-z, 0-9, '.', '_', '-')")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input (for scripts)")
]


def _read_password(from_stdin: bool) -> str:
    """From a prompt (asked twice) on a terminal; from the first line of standard input otherwise."""
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise InputError("no password on standard input")
        return line.rstrip("\r\n")
    first = typer.prompt("Password", hide_input=True, err=True)
    if typer.prompt("Again", hide_input=True, err=True) != first:
        raise InputError("the two passwords differ")
    return str(first)


@admin_app.command("create-user")
def create_user_command(name: UserName, password_stdin: PasswordStdin = False) -> None:
    """Create an admin user; the password comes from a prompt or standard input, never an argument."""
    password = _read_password(password_stdin)
    env = environment()
    with env.transaction() as session:
        admins.create_user(session, name, password, now=env.now())
    say(f"admin user {name} created; log in at {env.urls.admin()}")


@admin_app.command("set-password")
def set_password_command(name: UserName, password_stdin: PasswordStdin = False) -> None:
    """A new password for an admin user (their open dashboard sessions end)."""
    password = _read_password(password_stdin)
    env = environment()
    with env.transaction() as session:
        admins.set_password(session, name, password, now=env.now())
    say(f"password of {name} changed")


@admin_app.command("users")
def users_command() -> None:
    """The admin users."""
    with environment().transaction() as session:
        rows = admins.list_users(session)
    table = Table("name", "disabled", "created")
    for name, disabled, created in rows:
        table.add_row(name, "yes" if disabled else "", when(created))
    console.print(table)


@admin_app.command("create-token")
def create_token_command(
    name: UserName,
    label: Annotated[str, typer.Option(help="What the token is for (shown by admin tokens)")] = "api",
) -> None:
    """An API token acting as admin user NAME, printed once: send it as 'Authorization: Bearer TOKEN'."""
    env = environment()
    with env.transaction() as session:
        token = admins.create_token(session, name, label, now=env.now())
    err_console.print(f"API token {token.id} for {token.user} ({token.label}); it is shown only now:")
    print(token.secret)


@admin_app.command("tokens")
def tokens_command() -> None:
    """Every API token (never the secret: its first characters)."""
    with environment().transaction() as session:
        rows = admins.list_tokens(session)
    table = Table("id", "user", "label", "starts with", "created", "last used", "revoked")
    for t in rows:
        table.add_row(
            str(t.id), t.user, t.label, t.prefix + "…", when(t.created_at), when(t.last_used_at),
            when(t.revoked_at),
        )  # fmt: skip
    console.print(table)


@admin_app.command("revoke-token")
def revoke_token_command(
    token_id: Annotated[int, typer.Argument(help="Token id (admin tokens lists them)", min=1, max=2**63 - 1)],
) -> None:
    """Revoke an API token: the next request with it gets 401."""
    env = environment()
    with env.transaction() as session:
        admins.revoke_token(session, token_id, now=env.now())
    say(f"API token {token_id} revoked")
