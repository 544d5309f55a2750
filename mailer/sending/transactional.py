"""One-off messages a reader asked for (the signup confirmation, a new preferences link): built as
transactional mail and sent through the configured transport and its rate limiter.

Transactional, not bulk: no List-Id, no ``Precedence: bulk``, no List-Unsubscribe (there is no list to
leave yet), no campaign in Feedback-ID (``<kind>:transactional:<sender domain>``); ``Auto-Submitted:
auto-generated`` (RFC 3834) keeps auto-responders quiet. Not a hot path: the standard library builds it.
"""

from __future__ import annotations

import secrets
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate

from mailer.rendering.transactional import TransactionalEmail
from mailer.sending.message import BuiltMessage, SenderIdentity
from mailer.sending.sender import SendContext
from mailer.sending.transports import OutgoingMessage, TransportResult

__all__ = ["build_transactional", "send_transactional"]


def build_transactional(
    mail: TransactionalEmail, identity: SenderIdentity, *, now: float | None = None
) -> BuiltMessage:
    """The MIME bytes of one transactional email (multipart/alternative, text then HTML)."""
    message_id = f"<tx.{mail.kind.replace('_', '-')}.{secrets.token_hex(8)}@{identity.domain}>"
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((identity.sender_name, identity.sender_address))
    message["To"] = mail.to
    message["Reply-To"] = identity.reply_to or identity.sender_address
    message["Subject"] = mail.subject
    message["Date"] = formatdate(now, usegmt=True)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message["Feedback-ID"] = f"{mail.kind.replace('_', '-')}:transactional:{identity.domain}"
    message.set_content(mail.text, charset="utf-8")
    message.add_alternative(mail.html, subtype="html", charset="utf-8")
    return BuiltMessage(raw=message.as_bytes(), message_id=message_id)


def send_transactional(ctx: SendContext, mail: TransactionalEmail, *, transport: str) -> TransportResult:
    """Send it now through ``transport``, after a token of that transport's shared rate limiter (the
    one campaigns use: transactional mail counts against the same account rate). A TransportError
    tells why it could not leave."""
    built = build_transactional(mail, ctx.sender)
    ctx.rate_limiter(transport).acquire()
    outgoing = OutgoingMessage(
        sender=ctx.sender.sender_address,
        recipients=(mail.to,),
        raw=built.raw,
        message_id=built.message_id,
        tags={"type": "transactional", "kind": mail.kind.replace("_", "-")},
    )
    return ctx.transport(transport).send(outgoing)
