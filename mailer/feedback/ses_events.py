"""SES notification JSON -> typed, frozen events. Pure: no database, no clock, no network.

Two shapes arrive (both documented in the SES developer guide; tests/support/ses.py builds each):
identity notifications carry ``notificationType`` (Bounce, Complaint, Delivery); event publishing through
a configuration set carries ``eventType`` (Send, Reject, Bounce, Complaint, Delivery, Open, Click,
Rendering Failure, DeliveryDelay, Subscription). Both have the same ``bounce``/``complaint``/``delivery``
objects and the same ``mail`` object describing the original message. Types we do not act on become an
``IgnoredEvent`` with the reason; a payload that is not shaped like SES feedback raises ``InputError``.
The event types are in ``events.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from mailer.errors import InputError
from mailer.feedback.events import (
    BOUNCE_TYPES,
    CAMPAIGN_HEADER,
    BouncedRecipient,
    BounceEvent,
    BounceType,
    ClickEvent,
    ComplaintEvent,
    DeliveryDelayEvent,
    DeliveryEvent,
    IgnoredEvent,
    OpenEvent,
    RejectEvent,
    RenderingFailureEvent,
    SendEvent,
    SesEvent,
    SubscriptionEvent,
)

__all__ = ["classify", "classify_one"]


@dataclass(frozen=True)
class _Mail:
    """What every event says about the original message (the ``mail`` object)."""

    message_id: str  # the SES MessageId of the original message (the ledger's deliveries.message_id)
    campaign: str | None  # its X-Newsletter-Campaign header, when SES reported the headers
    sent_at: dt.datetime | None
    source: str | None
    destination: tuple[str, ...]


def classify(notification: object) -> list[SesEvent]:
    """One SES notification (a dict, or its JSON text) -> its events; a JSON array -> all of theirs.

    Raises InputError (one line naming the field) for anything not shaped like SES feedback.
    """
    if isinstance(notification, str | bytes):
        text = notification.decode("utf-8", "replace") if isinstance(notification, bytes) else notification
        try:
            notification = json.loads(text)
        except (ValueError, RecursionError):
            raise InputError("SES notification: not JSON") from None
        if _holds_unstorable(text):
            notification = _storable(notification)
    else:
        notification = _storable(notification)
    if isinstance(notification, list):
        return [event for item in notification for event in classify_one(item)]
    return classify_one(notification)


# NUL and lone surrogates: no database text column takes them (PostgreSQL refuses both), and the
# remote mail server writes a bounce's diagnostic: one such character must not keep its bounce from
# being applied. The raw message is stored as received; its events carry U+FFFD instead.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _holds_unstorable(text: str) -> bool:
    """Whether JSON ``text`` holds NUL or a lone surrogate, as such or escaped (the cheap tests first:
    a notification is read on the webhook's hot path)."""
    if "\x00" in text or (not text.isascii() and _UNSTORABLE.search(text)):
        return True
    return "\\u" in text and _UNSTORABLE_ESCAPE.search(text) is not None


def _storable(value: object) -> object:
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, Mapping):
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value


def classify_one(data: object) -> list[SesEvent]:
    if not isinstance(data, Mapping):
        raise InputError("SES notification: not a JSON object")
    if "notificationType" in data:
        kind = _str(data, "notificationType", "")
    elif "eventType" in data:
        kind = _str(data, "eventType", "")
    else:
        raise InputError("SES notification: neither notificationType nor eventType is present")
    builder = _BUILDERS.get(kind.replace(" ", "").lower())
    if builder is None:
        mail_id = data.get("mail", {}).get("messageId") if isinstance(data.get("mail"), Mapping) else None
        return [
            IgnoredEvent(
                reason=f"SES notification type {kind!r} is not feedback we act on",
                type=kind,
                message_id=mail_id if isinstance(mail_id, str) else None,
            )
        ]
    return [builder(data, _mail(data))]


# --- builders: one per notification type ------------------------------------------------------------


def _bounce(data: Mapping[str, Any], mail: _Mail) -> SesEvent:
    b = _obj(data, "bounce")
    bounce_type = _str(b, "bounceType", "bounce.")
    if bounce_type not in BOUNCE_TYPES:
        raise InputError(f"SES notification: bounce.bounceType {bounce_type!r} is not one of {BOUNCE_TYPES}")
    recipients = tuple(
        BouncedRecipient(
            email=_str(r, "emailAddress", "bounce.bouncedRecipients[]."),
            action=_opt_str(r, "action", "bounce.bouncedRecipients[]."),
            status=_opt_str(r, "status", "bounce.bouncedRecipients[]."),
            diagnostic_code=_opt_str(r, "diagnosticCode", "bounce.bouncedRecipients[]."),
        )
        for r in _objs(b, "bouncedRecipients", "bounce.")
    )
    return BounceEvent(
        bounce_type=cast(BounceType, bounce_type),  # checked against BOUNCE_TYPES above
        sub_type=_opt_str(b, "bounceSubType", "bounce.") or "Undetermined",
        recipients=recipients,
        feedback_id=_str(b, "feedbackId", "bounce."),
        timestamp=_req_time(b, "timestamp", "bounce."),
        message_id=mail.message_id,
        campaign=mail.campaign,
        reporting_mta=_opt_str(b, "reportingMTA", "bounce."),
    )


def _complaint(data: Mapping[str, Any], mail: _Mail) -> SesEvent:
    c = _obj(data, "complaint")
    recipients = tuple(
        _str(r, "emailAddress", "complaint.complainedRecipients[].")
        for r in _objs(c, "complainedRecipients", "complaint.")
    )
    return ComplaintEvent(
        recipients=recipients,
        feedback_type=_opt_str(c, "complaintFeedbackType", "complaint."),
        feedback_id=_str(c, "feedbackId", "complaint."),
        timestamp=_req_time(c, "timestamp", "complaint."),
        message_id=mail.message_id,
        campaign=mail.campaign,
        sub_type=_opt_str(c, "complaintSubType", "complaint."),
        user_agent=_opt_str(c, "userAgent", "complaint."),
        arrival_date=_time(c, "arrivalDate", "complaint."),
    )


def _delivery(data: Mapping[str, Any], mail: _Mail) -> SesEvent:
    d = _obj(data, "delivery")
    ms = d.get("processingTimeMillis")
    return DeliveryEvent(
        recipients=_strs(d, "recipients", "delivery."),
        timestamp=_req_time(d, "timestamp", "delivery."),
        message_id=mail.message_id,
        campaign=mail.campaign,
        smtp_response=_opt_str(d, "smtpResponse", "delivery."),
        processing_time_ms=ms if isinstance(ms, int) and not isinstance(ms, bool) else None,
    )


def _send(data: Mapping[str, Any], mail: _Mail) -> SesEvent:
    return SendEvent(mail.destination, mail.sent_at, mail.message_id, mail.campaign)


def _reject(data: Mapping[str, Any], mail: _Mail) -> SesEvent:
    r = _obj(data, "reject")
    reason = _opt_str(r, "reason", "reject.") or "unspecified"
    return RejectEvent(reason, mail.destination, mail.message_id, mail.campaign)


def _delivery_delay(data: Mapping[str, Any], mail: _Mail) -> SesEvent:
    d = _obj(data, "deliveryDelay")
    where = "deliveryDelay.delayedRecipients[]."
    recipients = tuple(
        BouncedRecipient(
            email=_str(r, "emailAddress", where),
            status=_opt_str(r, "status", where),
            diagnostic_code=_opt_str(r, "diagnosticCode", where),
        )
        for r in _objs(d, "delayedRecipients", "deliveryDelay.")
    )
    return DeliveryDelayEvent(
        delay_type=_opt_str(d, "delayType", "deliveryDelay.") or "Undetermined",
        recipients=recipients,
        timestamp=_time(d, "timestamp", "deliveryDelay."),
        expiration_time=_time(d, "expirationTime", "deliveryDelay."),
        message_id=mail.message_id,
        campaign=mail.campaign,
    )


def _open(data: Mapping[str, Any], mail: _Mail) -> SesEvent:
    o = _obj(data, "open")
    return OpenEvent(
        mail.destination,
        _time(o, "timestamp", "open."),
        mail.message_id,
        mail.campaign,
        user_agent=_opt_str(o, "userAgent", "open."),
    )


def _click(data: Mapping[str, Any], mail: _Mail) -> SesEvent:
    c = _obj(data, "click")
    return ClickEvent(
        _str(c, "link", "click."),
        mail.destination,
        _time(c, "timestamp", "click."),
        mail.message_id,
        mail.campaign,
    )


def _rendering_failure(data: Mapping[str, Any], mail: _Mail) -> SesEvent:
    f = _obj(data, "failure")
    return RenderingFailureEvent(
        error_message=_opt_str(f, "errorMessage", "failure.") or "unspecified",
        template_name=_opt_str(f, "templateName", "failure."),
        message_id=mail.message_id,
        campaign=mail.campaign,
    )


def _subscription(data: Mapping[str, Any], mail: _Mail) -> SesEvent:
    s = _obj(data, "subscription")
    new = s.get("newTopicPreferences")
    unsubscribe_all = isinstance(new, Mapping) and new.get("unsubscribeAll") is True
    return SubscriptionEvent(
        recipients=mail.destination,
        contact_list=_opt_str(s, "contactList", "subscription."),
        unsubscribe_all=unsubscribe_all,
        source=_opt_str(s, "source", "subscription."),
        timestamp=_time(s, "timestamp", "subscription."),
        message_id=mail.message_id,
        campaign=mail.campaign,
    )


_BUILDERS = {
    "bounce": _bounce,
    "complaint": _complaint,
    "delivery": _delivery,
    "send": _send,
    "reject": _reject,
    "deliverydelay": _delivery_delay,
    "open": _open,
    "click": _click,
    "renderingfailure": _rendering_failure,
    "subscription": _subscription,
}


# --- field access: every malformed shape ends as one InputError line --------------------------------


def _mail(data: Mapping[str, Any]) -> _Mail:
    mail = _obj(data, "mail")
    campaign = None
    headers = mail.get("headers")
    if isinstance(headers, list):
        for header in headers:
            if (
                isinstance(header, Mapping)
                and isinstance(header.get("name"), str)
                and header["name"].lower() == CAMPAIGN_HEADER.lower()
                and isinstance(header.get("value"), str)
            ):
                campaign = header["value"].strip() or None
                break
    return _Mail(
        message_id=_str(mail, "messageId", "mail."),
        campaign=campaign,
        sent_at=_time(mail, "timestamp", "mail."),
        source=_opt_str(mail, "source", "mail."),
        destination=_strs(mail, "destination", "mail.") if "destination" in mail else (),
    )


def _obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise InputError(f"SES notification: {key} is missing or not an object")
    return value


def _objs(data: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise InputError(f"SES notification: {where}{key} is missing or not a list of objects")
    return value


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"SES notification: {where}{key} is missing or not a string")
    return value.strip()


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"SES notification: {where}{key} is not a string")
    return value


def _strs(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"SES notification: {where}{key} is missing or not a list of strings")
    return tuple(v.strip() for v in value)


def _req_time(data: Mapping[str, Any], key: str, where: str) -> dt.datetime:
    value = _time(data, key, where)
    if value is None:
        raise InputError(f"SES notification: {where}{key} is missing")
    return value


def _time(data: Mapping[str, Any], key: str, where: str) -> dt.datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"SES notification: {where}{key} is missing or not a time")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"SES notification: {where}{key} {value[:40]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise InputError(f"SES notification: {where}{key} {value[:40]!r} is out of range") from None
