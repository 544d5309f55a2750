"""SMTP transport: one connection per worker process, reused across messages and reopened when lost.

Reply codes map onto the transport errors: 421/450/451/452 with a rate hint are throttling, other 4xx
are temporary, 5xx rejects that message only; a dropped connection is temporary (reconnect next time).
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl

from mailer.errors import TransportError
from mailer.sending.transports.base import (
    OutgoingMessage,
    RejectedError,
    TemporaryError,
    ThrottledError,
    TransportResult,
    register,
)
from mailer.settings import Settings

__all__ = ["SmtpTransport", "classify_reply"]

_RATE_WORDS = ("rate", "too many", "throttl", "slow down")


def classify_reply(code: int, text: str) -> type[TransportError]:
    """The transport error class for an SMTP reply code and text (pure)."""
    lowered = text.lower()
    if 400 <= code < 500:
        if code in (421, 450, 451, 452) and any(word in lowered for word in _RATE_WORDS):
            return ThrottledError
        return TemporaryError
    if code >= 500:
        return RejectedError
    return TemporaryError


@register("smtp")
class SmtpTransport:
    name = "smtp"

    def __init__(self, settings: Settings, *, timeout: float = 30.0) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.security = settings.smtp_security
        self.username = settings.smtp_username
        self.password = settings.smtp_password
        self.timeout = timeout
        self.rate = settings.smtp_send_rate
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        connection: smtplib.SMTP
        if self.security == "tls":
            connection = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        connection.ehlo()
        if self.security == "starttls":
            connection.starttls(context=context)
            connection.ehlo()
        if self.username:
            connection.login(self.username, self.password or "")
        return connection

    def send(self, message: OutgoingMessage) -> TransportResult:
        try:
            if self._connection is None:
                self._connection = self._connect()
            refused = self._connection.sendmail(message.sender, list(message.recipients), message.raw)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise classify_reply(code, _text(reply))(
                f"SMTP refused recipient: {code} {_text(reply)}", code=f"smtp-{code}"
            ) from exc
        except smtplib.SMTPResponseException as exc:  # SMTPSenderRefused, SMTPDataError, auth errors
            if exc.smtp_code == 421:
                self._drop()
            raise classify_reply(exc.smtp_code, _text(exc.smtp_error))(
                f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}", code=f"smtp-{exc.smtp_code}"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TemporaryError(f"SMTP {self.host}:{self.port} unavailable: {exc}", code="network") from exc
        if refused:  # only some recipients refused; we send one recipient per message
            code, reply = next(iter(refused.values()))
            raise classify_reply(code, _text(reply))(
                f"SMTP refused recipient: {code} {_text(reply)}", code=f"smtp-{code}"
            )
        return TransportResult(message_id=message.message_id)

    def max_rate(self) -> float | None:
        return self.rate

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._connection.quit()
            self._drop()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
