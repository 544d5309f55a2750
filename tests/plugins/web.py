"""The web app under a real uvicorn process on 127.0.0.1 (registered in conftest.py through pytest_plugins).

``live_web``: one server per test module, on a fresh SQLite file (or the URL a test passes), file outbox,
its own secret key, SNS certificates read from a folder holding the certificate of a signer made here
(and any a test passes), every SNS check on as in production (topic allow-list, message age,
certificate dates), and every outbound HTTPS request of the server sent through ``trap``: a listening
socket that counts connections, so a test can prove that a refused message made no request at all.
``start_web(..., fetch_certificates=True, trap_hold=5)`` serves without the folder: the server fetches
certificates over HTTPS, into a trap that holds each connection 5 s (a slow certificate host).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.services import free_port
from support.waiting import wait_for_start

from mailer.services.env import AppEnv
from mailer.settings import Settings
from mailer.testing.sns_signer import DEFAULT_TOPIC, SnsSigner

SECRET = "web-test-secret-key"


class ConnectionTrap:
    """A socket that accepts connections, counts them and closes them (no answer), at once or after
    ``hold`` seconds (a host that keeps its clients waiting)."""

    def __init__(self, hold: float = 0.0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self.hold = hold
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.hold:
                threading.Timer(self.hold, conn.close).start()
            else:
                conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@dataclass
class LiveWeb:
    url: str
    settings: Settings
    env: AppEnv
    process: subprocess.Popen[bytes]
    log: Path
    signer: SnsSigner
    trap: ConnectionTrap
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)

    def post_sns(
        self, body: str | bytes, message_type: str | None = "Notification", **headers: str
    ) -> httpx.Response:
        sent = {"content-type": "text/plain; charset=UTF-8", **headers}
        if message_type is not None:
            sent["x-amz-sns-message-type"] = message_type
        return self.client.post(self.settings.webhook_path, content=body, headers=sent)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.env.close()


def start_web(
    root: Path,
    *,
    database_url: str | None = None,
    certificates: Iterable[Path] = (),
    topics: Iterable[str] = (),
    fetch_certificates: bool = False,
    trap_hold: float = 0.0,
    **extra: str,
) -> LiveWeb:
    """A uvicorn process serving ``create_app`` with settings of its own under ``root``; ``certificates``
    (PEM files) join the signer's in its certificate folder, ``topics`` the signer's topic in the
    allow-list, ``extra`` are NEWSLETTER_* settings. ``fetch_certificates``: no certificate folder, the
    server fetches them over HTTPS (into the trap, which holds each connection ``trap_hold`` seconds)."""
    root.mkdir(parents=True, exist_ok=True)
    certs = root / "certs"
    certs.mkdir(exist_ok=True)
    for pem in certificates:
        shutil.copy(pem, certs / pem.name)
    signer = SnsSigner()
    signer.write_certificate(certs)
    trap = ConnectionTrap(hold=trap_hold)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    variables = {
        "NEWSLETTER_DATA_DIR": str(root / "var"),
        "NEWSLETTER_BASE_URL": url,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_SENDER_ADDRESS": "news@example.org",
        "NEWSLETTER_SNS_TOPIC_ARNS": ",".join((DEFAULT_TOPIC, *topics)),
        **({} if fetch_certificates else {"NEWSLETTER_SNS_CERT_DIR": str(certs)}),
        **({"NEWSLETTER_DATABASE_URL": database_url} if database_url else {}),
        **extra,
    }
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_") and "proxy" not in k.lower()
    }
    # any outbound HTTPS request of the server (a SubscribeURL visit, a certificate fetch) reaches the trap
    environ.update(variables, https_proxy=f"http://127.0.0.1:{trap.port}", no_proxy="")
    log = root / f"uvicorn-{port}.log"
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "mailer.web.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=root, env=environ, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    wait_for_start(process, lambda: _healthy(url), what="the web app", log=log)
    settings = Settings(
        **{name.removeprefix("NEWSLETTER_").lower(): value for name, value in variables.items()}  # type: ignore[arg-type]
    )
    return LiveWeb(url, settings, AppEnv.from_settings(settings), process, log, signer, trap)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def live_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWeb]:
    web = start_web(tmp_path_factory.mktemp("web"))
    try:
        yield web
    finally:
        web.stop()
        web.trap.close()


def outbox_messages(web: LiveWeb) -> list[Any]:
    """The messages the app's file transport wrote, oldest first, parsed."""
    import email
    import email.policy

    folder = web.settings.resolved_outbox_dir
    files = sorted(folder.rglob("*.eml"), key=lambda p: p.stat().st_mtime_ns) if folder.exists() else []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]
