"""``newsletter serve``: the web side (preference centre, unsubscribe, signup, archive, SES webhook) under
uvicorn, with the settings of this environment."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import typer

from mailer.cli.app import app, say, settings, warn
from mailer.errors import InputError


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Web processes", min=1, max=64)] = 1,
    reload: Annotated[
        bool, typer.Option("--reload", help="Restart when the code changes (development)")
    ] = False,
    proxy_headers: Annotated[
        bool,
        typer.Option(
            "--proxy-headers/--no-proxy-headers",
            help="Trust X-Forwarded-For/-Proto from 127.0.0.1: only behind a proxy on this machine (else "
            "any local client could pick the address the per-IP limits count)",
        ),
    ] = False,
) -> None:
    """Serve the web side until interrupted. Links in pages and emails use NEWSLETTER_BASE_URL."""
    import uvicorn

    from mailer.web.app import create_app

    if reload and workers > 1:
        raise InputError("--reload and --workers > 1 do not go together")
    create_app(settings())  # refuse a bad configuration here, in one line, before uvicorn starts
    base = settings().base_url
    say(f"listening on {host}:{port}; open {base} (pages and emails link to NEWSLETTER_BASE_URL)")
    if urlsplit(base).port not in (None, port) and urlsplit(base).hostname in ("127.0.0.1", "localhost"):
        warn(
            f"NEWSLETTER_BASE_URL {base} names another port than --port {port}: its links will not reach this"
        )
    if urlsplit(base).scheme == "http" and urlsplit(base).hostname not in ("127.0.0.1", "localhost", "::1"):
        warn(
            f"NEWSLETTER_BASE_URL {base} is plain http on another host: browsers drop the dashboard's Secure "
            "login cookie there; serve it over https"
        )
    uvicorn.run(
        "mailer.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        # pages are read once per process: a change to a template restarts it too
        reload_includes=["*.py", "*.html", "*.xml", "*.yaml", "*.css"] if reload else None,
        proxy_headers=proxy_headers,
        log_level="info",
    )
