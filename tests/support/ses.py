"""SES notification bodies (the ``Message`` of an SNS notification) built from the fields AWS documents
("Amazon SNS notification contents for Amazon SES" and "Event data that Amazon SES publishes to Amazon
SNS" in the SES developer guide).

Two forms: identity notifications (``notificationType``: Bounce, Complaint, Delivery) and event
publishing through a configuration set (``eventType``: those three and Send, Reject, Open, Click,
Rendering Failure, DeliveryDelay, Subscription), whose ``mail`` object also carries the set's tags.

Bounces and complaints start from ``mailer.feedback.samples`` (what the demo sends): its ``mail`` object
and its recipient entries are used as they are; this adds several recipients, the forms without a DSN
or a feedback report, the event-publishing form and the other event types. ``DOCUMENTED`` lists the
fields AWS documents per object, so a test can check that what is built here (and ``samples``) uses no
other and misses no required one; ``tests/real_world`` checks the same table against AWS's own examples.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from mailer.feedback import samples

AT = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
Form = Literal["notification", "event"]  # identity notification (notificationType) or event publishing
Json = dict[str, Any]

CONFIGURATION_SET = "newsletter-feedback"
# object -> (required fields, optional fields), as the SES developer guide lists them
DOCUMENTED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "mail": (
        frozenset({"timestamp", "messageId", "source", "sendingAccountId", "destination"}),
        frozenset(
            {
                "sourceArn",
                "sourceIp",
                "callerIdentity",
                "headersTruncated",
                "headers",
                "commonHeaders",
                "tags",
            }
        ),
    ),  # fmt: skip
    "bounce": (
        frozenset({"bounceType", "bounceSubType", "bouncedRecipients", "timestamp", "feedbackId"}),
        frozenset({"remoteMtaIp", "reportingMTA"}),
    ),
    "bouncedRecipients": (frozenset({"emailAddress"}), frozenset({"action", "status", "diagnosticCode"})),
    "complaint": (
        frozenset({"complainedRecipients", "timestamp", "feedbackId"}),
        frozenset({"complaintSubType", "userAgent", "complaintFeedbackType", "arrivalDate"}),
    ),
    "complainedRecipients": (frozenset({"emailAddress"}), frozenset()),
    "delivery": (
        frozenset({"timestamp", "processingTimeMillis", "recipients", "smtpResponse"}),
        frozenset({"reportingMTA", "remoteMtaIp"}),
    ),
    "send": (frozenset(), frozenset()),
    "reject": (frozenset({"reason"}), frozenset()),
    "open": (frozenset({"ipAddress", "timestamp", "userAgent"}), frozenset()),
    "click": (frozenset({"ipAddress", "link", "timestamp", "userAgent"}), frozenset({"linkTags"})),
    "failure": (frozenset({"errorMessage", "templateName"}), frozenset()),
    "deliveryDelay": (
        frozenset({"timestamp", "delayType", "expirationTime", "delayedRecipients"}),
        frozenset({"reportingMTA"}),
    ),
    "delayedRecipients": (frozenset({"emailAddress", "status", "diagnosticCode"}), frozenset()),
    "subscription": (
        frozenset({"contactList", "timestamp", "source", "newTopicPreferences"}),
        frozenset({"oldTopicPreferences"}),
    ),
}
_TYPE_OBJECT = {
    "Bounce": "bounce", "Complaint": "complaint", "Delivery": "delivery", "Send": "send", "Reject": "reject",
    "Open": "open", "Click": "click", "Rendering Failure": "failure", "DeliveryDelay": "deliveryDelay",
    "Subscription": "subscription",
}  # fmt: skip


def undocumented(notification: Mapping[str, Any]) -> list[str]:
    """What in ``notification`` the guide does not document: unknown fields, missing required ones."""
    kind = notification.get("notificationType", notification.get("eventType"))
    body = _TYPE_OBJECT.get(str(kind))
    if body is None:
        return [f"type {kind!r}"]
    problems = sorted(set(notification) - {"notificationType", "eventType", "mail", body})
    for name, value in [("mail", notification.get("mail")), (body, notification.get(body))]:
        problems += _check(name, value)
        for part in ("bouncedRecipients", "complainedRecipients", "delayedRecipients"):
            if isinstance(value, Mapping) and part in value:
                for item in value[part]:
                    problems += _check(part, item)
    return problems


def _check(name: str, value: object) -> list[str]:
    if not isinstance(value, Mapping):
        return [f"{name}: not an object"]
    required, optional = DOCUMENTED[name]
    return [f"{name}.{key}: missing" for key in sorted(required - set(value))] + [
        f"{name}.{key}: undocumented" for key in sorted(set(value) - required - optional)
    ]


# --- bounce, complaint, delivery: both forms ---------------------------------------------------------


def bounce(
    recipients: str | Sequence[str],
    *,
    message_id: str = "ses-bounce",
    at: dt.datetime = AT,
    bounce_type: Literal["Permanent", "Transient", "Undetermined"] = "Permanent",
    sub_type: str | None = None,
    dsn: bool = True,
    form: Form = "notification",
    campaign: str | None = None,
) -> Json:
    """A bounce; with a DSN each recipient has action, status and diagnosticCode and the bounce its
    reportingMTA, without one only the addresses (the guide's two examples)."""
    emails = _emails(recipients)
    note = samples.bounce_notification(
        emails[0], message_id=message_id, at=at, bounce_type=bounce_type, campaign=campaign
    )
    details = note["bounce"]
    if dsn:
        details["bouncedRecipients"] = [
            samples.bounce_notification(e, message_id=message_id, at=at, bounce_type=bounce_type)["bounce"][
                "bouncedRecipients"
            ][0]
            for e in emails
        ]
    else:
        details["bouncedRecipients"] = [{"emailAddress": e} for e in emails]
        del details["reportingMTA"]
    if sub_type is not None:
        details["bounceSubType"] = sub_type
    return _finish(note, "Bounce", emails, form, message_id, at, campaign)


def complaint(
    recipients: str | Sequence[str],
    *,
    message_id: str = "ses-complaint",
    at: dt.datetime = AT,
    feedback_report: bool = True,
    feedback_type: str = "abuse",
    form: Form = "notification",
    campaign: str | None = None,
) -> Json:
    """A complaint; with a feedback report it has complaintFeedbackType, userAgent and arrivalDate. The
    event form has ``complaintSubType: null``, as SES sends it."""
    emails = _emails(recipients)
    note = samples.complaint_notification(
        emails[0],
        message_id=message_id,
        at=at,
        feedback_type=feedback_type if feedback_report else None,
        campaign=campaign,
    )
    details = note["complaint"]
    details["complainedRecipients"] = [{"emailAddress": e} for e in emails]
    if not feedback_report:
        details.pop("userAgent", None)  # the feedback loop's agent is part of the report
    if form == "event":
        details["complaintSubType"] = None
    return _finish(note, "Complaint", emails, form, message_id, at, campaign)


def delivery(
    recipients: str | Sequence[str],
    *,
    message_id: str = "ses-delivery",
    at: dt.datetime = AT,
    processing_time_ms: int = 546,
    smtp_response: str = "250 2.6.0 Message received",
    form: Form = "notification",
    campaign: str | None = None,
) -> Json:
    emails = _emails(recipients)
    note: Json = {
        "delivery": {
            "timestamp": _iso(at),
            "processingTimeMillis": processing_time_ms,
            "recipients": emails,
            "smtpResponse": smtp_response,
            "reportingMTA": "a1-23.smtp-out.example.org",
            "remoteMtaIp": "127.0.2.0",
        }
    }
    return _finish(note, "Delivery", emails, form, message_id, at, campaign)


# --- the other event types: event publishing only -----------------------------------------------------


def send_event(
    recipients: str | Sequence[str], *, message_id: str = "ses-send", at: dt.datetime = AT
) -> Json:
    return _event("Send", "send", {}, recipients, message_id, at)


def reject_event(
    recipients: str | Sequence[str], *, reason: str = "Bad content", message_id: str = "ses-reject"
) -> Json:
    return _event("Reject", "reject", {"reason": reason}, recipients, message_id, AT)


def open_event(
    recipients: str | Sequence[str], *, message_id: str = "ses-open", at: dt.datetime = AT
) -> Json:
    details = {"ipAddress": "192.0.2.1", "timestamp": _iso(at), "userAgent": "Mozilla/5.0 (X11; Linux)"}
    return _event("Open", "open", details, recipients, message_id, at)


def click_event(
    recipients: str | Sequence[str], *, link: str, message_id: str = "ses-click", at: dt.datetime = AT
) -> Json:
    details = {
        "ipAddress": "192.0.2.1",
        "link": link,
        "linkTags": {"section": ["nova"]},
        "timestamp": _iso(at),
        "userAgent": "Mozilla/5.0 (X11; Linux)",
    }
    return _event("Click", "click", details, recipients, message_id, at)


def rendering_failure_event(
    recipients: str | Sequence[str], *, template: str, error: str, message_id: str = "ses-failure"
) -> Json:
    """Nothing was rendered, so the mail object has no headers (as in the guide's example)."""
    details = {"errorMessage": error, "templateName": template}
    return _event("Rendering Failure", "failure", details, recipients, message_id, AT, headers=False)


def delivery_delay_event(
    recipients: str | Sequence[str],
    *,
    delay_type: str = "TransientCommunicationFailure",
    message_id: str = "ses-delay",
    at: dt.datetime = AT,
) -> Json:
    details = {
        "timestamp": _iso(at),
        "delayType": delay_type,
        "expirationTime": _iso(at + dt.timedelta(hours=12)),
        "delayedRecipients": [
            {"emailAddress": e, "status": "4.4.1", "diagnosticCode": "smtp; 421 4.4.1 Unable to connect"}
            for e in _emails(recipients)
        ],
        "reportingMTA": "a1-23.smtp-out.example.org",
    }
    return _event("DeliveryDelay", "deliveryDelay", details, recipients, message_id, at)


def subscription_event(
    recipients: str | Sequence[str],
    *,
    unsubscribe_all: bool,
    contact_list: str = "Newsletter",
    message_id: str = "ses-subscription",
    at: dt.datetime = AT,
) -> Json:
    """An SES-managed contact list changed: the reader left topic ``nova``, and all of the list with
    ``unsubscribe_all``."""
    before = [{"topicName": "nova", "subscriptionStatus": "OptIn"}]
    after = [{"topicName": "nova", "subscriptionStatus": "OptOut"}]
    details = {
        "contactList": contact_list,
        "timestamp": _iso(at),
        "source": "UnsubscribeHeader",
        "newTopicPreferences": {"unsubscribeAll": unsubscribe_all, "topicSubscriptionStatus": after},
        "oldTopicPreferences": {"unsubscribeAll": False, "topicSubscriptionStatus": before},
    }
    return _event("Subscription", "subscription", details, recipients, message_id, at)


# --- the mail object and the two forms -----------------------------------------------------------------


def _event(
    kind: str,
    key: str,
    details: Json,
    recipients: str | Sequence[str],
    message_id: str,
    at: dt.datetime,
    *,
    headers: bool = True,
) -> Json:
    emails = _emails(recipients)
    return _finish({key: details}, kind, emails, "event", message_id, at, None, headers=headers)


def _finish(
    note: Json,
    kind: str,
    emails: list[str],
    form: Form,
    message_id: str,
    at: dt.datetime,
    campaign: str | None,
    *,
    headers: bool = True,
) -> Json:
    """``note`` with its type field first (the form's name for it) and the mail object of ``emails``."""
    mail = samples.bounce_notification(emails[0], message_id=message_id, at=at, campaign=campaign)["mail"]
    mail["destination"] = list(emails)
    for header in mail["headers"]:
        if header["name"] == "To":
            header["value"] = ", ".join(emails)
    mail["commonHeaders"]["to"] = list(emails)
    if not headers:
        del mail["headers"], mail["commonHeaders"]
    if form == "event":
        domain = mail["source"].rpartition("@")[2]
        mail["tags"] = {
            "ses:configuration-set": [CONFIGURATION_SET],
            "ses:source-ip": [mail["sourceIp"]],
            "ses:from-domain": [domain],
            "ses:caller-identity": ["newsletter"],
        }
    type_key = "notificationType" if form == "notification" else "eventType"
    body = {key: value for key, value in note.items() if key not in ("notificationType", "mail")}
    return {type_key: kind, "mail": mail, **body}


def _emails(recipients: str | Sequence[str]) -> list[str]:
    emails = [recipients] if isinstance(recipients, str) else list(recipients)
    if not emails:
        raise ValueError("at least one recipient")
    return emails


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
