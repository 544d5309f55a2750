"""SES bounce and complaint notifications built locally, shaped like the SES developer guide's examples.

The demo wraps them in SNS envelopes signed with a certificate made for its run (mailer.services.demo)
and feeds them through the webhook's path: verified, stored, applied. Tests do the same with
mailer.testing.sns_signer, or apply them bare, explicitly unverified (``--no-verify``,
``mailer.feedback.apply.SKIP_VERIFICATION``). Pure: the time is a parameter, the feedback id derives
from the inputs so the same call gives the same notification.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Literal

from mailer.feedback.events import CAMPAIGN_HEADER

__all__ = ["bounce_notification", "complaint_notification"]

_DIAGNOSTIC = {
    "Permanent": ("5.1.1", "smtp; 550 5.1.1 <{email}>... User unknown"),
    "Transient": ("4.2.2", "smtp; 452 4.2.2 <{email}>... Mailbox full"),
    "Undetermined": ("5.0.0", "smtp; 554 5.0.0 <{email}>... Undetermined"),
}
_SUB_TYPE = {"Permanent": "General", "Transient": "MailboxFull", "Undetermined": "Undetermined"}


def bounce_notification(
    email: str,
    *,
    message_id: str,
    at: dt.datetime,
    bounce_type: Literal["Permanent", "Transient", "Undetermined"] = "Permanent",
    campaign: str | None = None,
    sender: str = "newsletter@example.org",
) -> dict[str, Any]:
    """A ``notificationType: Bounce`` notification (SES guide: "bounce notification with a DSN")."""
    status, diagnostic = _DIAGNOSTIC[bounce_type]
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "reportingMTA": "dns; email.example.com",
            "bouncedRecipients": [
                {
                    "emailAddress": email,
                    "status": status,
                    "action": "failed",
                    "diagnosticCode": diagnostic.format(email=email),
                }
            ],
            "bounceSubType": _SUB_TYPE[bounce_type],
            "timestamp": _iso(at),
            "feedbackId": _feedback_id(f"bounce-{bounce_type}", email, message_id, at),
            "remoteMtaIp": "127.0.2.0",
        },
        "mail": _mail(email, message_id, at, campaign, sender),
    }


def complaint_notification(
    email: str,
    *,
    message_id: str,
    at: dt.datetime,
    feedback_type: str | None = "abuse",
    campaign: str | None = None,
    sender: str = "newsletter@example.org",
) -> dict[str, Any]:
    """A ``notificationType: Complaint`` notification (SES guide: "complaint ... with a feedback report")."""
    complaint: dict[str, Any] = {
        "userAgent": "AnyCompany Feedback Loop (V0.01)",
        "complainedRecipients": [{"emailAddress": email}],
        "timestamp": _iso(at),
        "feedbackId": _feedback_id("complaint", email, message_id, at),
    }
    if feedback_type is not None:
        complaint["complaintFeedbackType"] = feedback_type
        complaint["arrivalDate"] = _iso(at)
    return {
        "notificationType": "Complaint",
        "complaint": complaint,
        "mail": _mail(email, message_id, at, campaign, sender),
    }


def _mail(email: str, message_id: str, at: dt.datetime, campaign: str | None, sender: str) -> dict[str, Any]:
    sent = at - dt.timedelta(seconds=30)
    headers = [
        {"name": "From", "value": sender},
        {"name": "To", "value": email},
        {"name": "Subject", "value": "Newsletter"},
        {"name": "MIME-Version", "value": "1.0"},
        {"name": "Content-Type", "value": 'multipart/alternative; boundary="XBoundary"'},
    ]
    if campaign is not None:
        headers.append({"name": CAMPAIGN_HEADER, "value": campaign})
    return {
        "timestamp": _iso(sent),
        "messageId": message_id,
        "source": sender,
        "sourceArn": f"arn:aws:ses:us-east-1:123456789012:identity/{sender.rpartition('@')[2]}",
        "sourceIp": "127.0.3.0",
        "sendingAccountId": "123456789012",
        "destination": [email],
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": {"from": [sender], "to": [email], "messageId": message_id, "subject": "Newsletter"},
    }


def _iso(at: dt.datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("pass an aware datetime")
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _feedback_id(kind: str, email: str, message_id: str, at: dt.datetime) -> str:
    digest = hashlib.sha256(f"{kind}|{email}|{message_id}|{at.isoformat()}".encode()).hexdigest()
    return f"{digest[:16]}-{digest[16:24]}-{digest[24:28]}-{digest[28:32]}-{digest[32:44]}-000000"
