"""Replays of the SES developer guide's JSON examples in ../shared/fixtures/ses (awsdocs/
amazon-ses-developer-guide, CC BY-SA 4.0) and of the SES messages inside the real signed SNS ones
(django-ses tests, MIT).

Every property checked here is also checked on notifications the project builds from the documented
fields (tests/feedback/test_feedback_events.py with support/ses.py); these add AWS's own examples as
cases, and check the field table of support/ses.py against them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ses
from support.paths import SHARED_FIXTURES

from mailer.errors import InputError
from mailer.feedback import samples
from mailer.feedback.events import (
    BounceEvent,
    ClickEvent,
    ComplaintEvent,
    DeliveryDelayEvent,
    DeliveryEvent,
    OpenEvent,
    RejectEvent,
    RenderingFailureEvent,
    SendEvent,
    SubscriptionEvent,
)
from mailer.feedback.policy import LedgerMark, ResetSoftBounces, Suppress, Unsubscribe, actions_for
from mailer.feedback.ses_events import classify
from mailer.feedback.sns import parse_sns_message

SES_DIR = SHARED_FIXTURES / "ses"
SNS_DIR = SHARED_FIXTURES / "sns"
EXAMPLE_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"

# Every SES fixture file -> (event class, the fields that identify it).
EXPECTED: dict[str, tuple[type, dict[str, Any]]] = {
    "notification-examples--bounce-notification-with-a-dsn.json": (
        BounceEvent,
        {
            "bounce_type": "Permanent",
            "sub_type": "General",
            "message_id": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        },
    ),
    "notification-examples--bounce-notification-without-a-dsn.json": (
        BounceEvent,
        {
            "bounce_type": "Permanent",
            "feedback_id": "00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000",
        },
    ),
    "notification-examples--complaint-notification-with-a-feedback-report.json": (
        ComplaintEvent,
        {
            "recipients": ("richard@example.com",),
            "feedback_type": "abuse",
            "user_agent": "AnyCompany Feedback Loop (V0.01)",
        },
    ),
    "notification-examples--complaint-notification-without-a-feedback-report.json": (
        ComplaintEvent,
        {"recipients": ("richard@example.com",), "feedback_type": None, "arrival_date": None},
    ),
    "notification-examples--amazon-sns-delivery-notification-example.json": (
        DeliveryEvent,
        {
            "recipients": ("jane@example.com",),
            "processing_time_ms": 546,
            "smtp_response": "250 ok:  Message 64111812 accepted",
        },
    ),
}
for form in ("sns", "firehose"):
    prefix = f"event-publishing-retrieving-{form}-examples--"
    EXPECTED |= {
        f"{prefix}bounce-record.json": (BounceEvent, {"bounce_type": "Permanent", "message_id": EXAMPLE_ID}),
        f"{prefix}complaint-record.json": (
            ComplaintEvent,
            {"feedback_type": "abuse", "recipients": ("recipient@example.com",)},
        ),
        f"{prefix}delivery-record.json": (
            DeliveryEvent,
            {"processing_time_ms": 11893, "recipients": ("recipient@example.com",)},
        ),
        f"{prefix}send-record.json": (SendEvent, {"recipients": ("recipient@example.com",)}),
        f"{prefix}reject-record.json": (RejectEvent, {"reason": "Bad content"}),
        f"{prefix}deliverydelay-record.json": (
            DeliveryDelayEvent,
            {"delay_type": "TransientCommunicationFailure"},
        ),
        f"{prefix}open-record.json": (OpenEvent, {"recipients": ("recipient@example.com",)}),
        f"{prefix}click-record.json": (
            ClickEvent,
            {"link": "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"},
        ),
        f"{prefix}rendering-failure-record.json": (RenderingFailureEvent, {"template_name": "MyTemplate"}),
        f"{prefix}subscription-record.json": (
            SubscriptionEvent,
            {"unsubscribe_all": True, "contact_list": "ContactListName"},
        ),
    }


def test_every_ses_example_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in SES_DIR.glob("*.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ses_example_classifies_into_the_expected_event(name: str) -> None:
    cls, fields = EXPECTED[name]
    events = classify((SES_DIR / name).read_text())
    assert len(events) == 1
    event = events[0]
    assert type(event) is cls
    for key, value in fields.items():
        assert getattr(event, key) == value, key
    with pytest.raises(AttributeError):
        event.message_id = "changed"  # type: ignore[misc]  # frozen


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_guides_examples_use_only_the_fields_the_factory_knows_as_documented(name: str) -> None:
    """support/ses.py's table of documented fields agrees with AWS's own examples."""
    assert ses.undocumented(json.loads((SES_DIR / name).read_text())) == []


def test_the_guides_bounce_with_dsn_keeps_the_diagnostic_per_recipient() -> None:
    (event,) = classify((SES_DIR / "notification-examples--bounce-notification-with-a-dsn.json").read_text())
    assert isinstance(event, BounceEvent)
    (recipient,) = event.recipients
    assert recipient.email == "jane@example.com"
    assert recipient.status == "5.1.1" and recipient.action == "failed"
    assert recipient.diagnostic_code == "smtp; 550 5.1.1 <jane@example.com>... User"
    assert event.timestamp == dt.datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=dt.UTC)
    assert event.reporting_mta == "dns; email.example.com"


def test_real_ses_messages_inside_signed_sns_notifications() -> None:
    bounce = parse_sns_message((SNS_DIR / "notification-ses-bounce-no-subject-sigv1.json").read_text())
    (event,) = classify(bounce.message)
    assert isinstance(event, BounceEvent)
    assert event.recipients[0].email == "bounce@simulator.amazonses.com"
    assert event.message_id == "0100017fe7043e8e-fc9c357d-a9a4-49bc-a4b4-fa984009d568-000000"
    complaint = parse_sns_message((SNS_DIR / "notification-ses-event-complaint-sigv1.json").read_text())
    (event,) = classify(complaint.message)
    assert isinstance(event, ComplaintEvent)
    assert event.recipients == ("complaint@simulator.amazonses.com",) and event.sub_type is None
    for message in (bounce.message, complaint.message):
        assert ses.undocumented(json.loads(message)) == []


def test_a_json_array_of_the_guides_examples_gives_all_their_events() -> None:
    files = [
        "notification-examples--bounce-notification-with-a-dsn.json",
        "notification-examples--amazon-sns-delivery-notification-example.json",
    ]
    events = classify(json.dumps([json.loads((SES_DIR / f).read_text()) for f in files]))
    assert [type(e) for e in events] == [BounceEvent, DeliveryEvent]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "notification-examples--bounce-notification-without-a-dsn.json",
            [Suppress, LedgerMark, Suppress, LedgerMark],
        ),
        (
            "notification-examples--complaint-notification-without-a-feedback-report.json",
            [Unsubscribe, Suppress, LedgerMark],
        ),
        (
            "notification-examples--amazon-sns-delivery-notification-example.json",
            [ResetSoftBounces, LedgerMark],
        ),
        ("event-publishing-retrieving-sns-examples--send-record.json", []),
        ("event-publishing-retrieving-sns-examples--reject-record.json", []),
        ("event-publishing-retrieving-sns-examples--deliverydelay-record.json", []),
        ("event-publishing-retrieving-sns-examples--open-record.json", []),
        ("event-publishing-retrieving-sns-examples--click-record.json", []),
        ("event-publishing-retrieving-sns-examples--rendering-failure-record.json", []),
        ("event-publishing-retrieving-sns-examples--subscription-record.json", [Unsubscribe]),
    ],
)
def test_policy_table_over_the_guides_examples(name: str, expected: list[type]) -> None:
    assert [type(a) for a in actions_for(classify((SES_DIR / name).read_text()))] == expected


def test_samples_and_the_factory_are_shaped_like_the_guides_examples() -> None:
    at = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
    pairs = [
        (
            "notification-examples--bounce-notification-with-a-dsn.json",
            samples.bounce_notification("a@x.org", message_id="m1", at=at, campaign="7"),
        ),
        (
            "notification-examples--complaint-notification-with-a-feedback-report.json",
            samples.complaint_notification("a@x.org", message_id="m1", at=at),
        ),
        ("notification-examples--bounce-notification-with-a-dsn.json", ses.bounce("a@x.org")),
        (
            "notification-examples--bounce-notification-without-a-dsn.json",
            ses.bounce(["a@x.org", "b@x.org"], dsn=False),
        ),
        (
            "notification-examples--complaint-notification-with-a-feedback-report.json",
            ses.complaint("a@x.org"),
        ),
        (
            "notification-examples--complaint-notification-without-a-feedback-report.json",
            ses.complaint("a@x.org", feedback_report=False),
        ),
        ("event-publishing-retrieving-sns-examples--bounce-record.json", ses.bounce("a@x.org", form="event")),
        ("event-publishing-retrieving-sns-examples--send-record.json", ses.send_event("a@x.org")),
        ("event-publishing-retrieving-sns-examples--reject-record.json", ses.reject_event("a@x.org")),
        (
            "event-publishing-retrieving-sns-examples--subscription-record.json",
            ses.subscription_event("a@x.org", unsubscribe_all=True),
        ),
    ]
    for name, built in pairs:
        # the event examples carry neither sourceIp nor remoteMtaIp (the guide documents both), and
        # tags of their own: the tags are compared as one object
        skip = {"sourceIp", "remoteMtaIp"} if "eventType" in built else set()
        assert _shape(built, skip) == _shape(json.loads((SES_DIR / name).read_text()), skip), name


def _shape(value: Any, skip: set[str]) -> Any:
    """Keys and value types, recursively (lists by their first item); ``callerIdentity`` and the
    ``date`` header, which only some examples carry, are left out, and so is ``skip``."""
    if isinstance(value, dict):
        return {
            k: "dict" if k == "tags" else _shape(v, skip)
            for k, v in value.items()
            if k not in {"callerIdentity", "date", *skip}
        }
    if isinstance(value, list):
        return [_shape(value[0], skip)] if value else []
    return type(value).__name__


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(EXPECTED)), st.data())
def test_mutated_examples_raise_nothing_but_input_error(name: str, data: st.DataObject) -> None:
    """A guide example with one value somewhere replaced by arbitrary JSON."""
    doc = json.loads((SES_DIR / name).read_text())
    node: Any = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and data.draw(st.booleans()):
            node = child
            continue
        node[key] = data.draw(JSONISH)
        break
    with contextlib.suppress(InputError):
        actions_for(classify(doc))
