"""SES notification classification and the bounce/complaint policy.

Fixtures: shared/fixtures/ses (the SES developer guide's JSON examples, awsdocs/amazon-ses-developer-guide,
CC BY-SA 4.0) and the SES messages inside the real SNS fixtures (django-ses tests, MIT).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.paths import SHARED_FIXTURES

from mailer.errors import InputError
from mailer.feedback import samples
from mailer.feedback.policy import (
    LedgerMark,
    ResetSoftBounces,
    SoftBounce,
    Suppress,
    Unsubscribe,
    actions_for,
)
from mailer.feedback.ses_events import (
    BounceEvent,
    ClickEvent,
    ComplaintEvent,
    DeliveryDelayEvent,
    DeliveryEvent,
    IgnoredEvent,
    OpenEvent,
    RejectEvent,
    RenderingFailureEvent,
    SendEvent,
    SubscriptionEvent,
    classify,
)
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


def test_every_ses_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in SES_DIR.glob("*.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ses_fixture_classifies_into_the_expected_event(name: str) -> None:
    cls, fields = EXPECTED[name]
    events = classify((SES_DIR / name).read_text())
    assert len(events) == 1
    event = events[0]
    assert type(event) is cls
    for key, value in fields.items():
        assert getattr(event, key) == value, key
    with pytest.raises(AttributeError):
        event.message_id = "changed"  # frozen


def test_bounce_with_dsn_keeps_the_diagnostic_per_recipient() -> None:
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


def test_campaign_header_is_read_from_the_original_headers() -> None:
    data = json.loads((SES_DIR / "notification-examples--bounce-notification-with-a-dsn.json").read_text())
    data["mail"]["headers"].append({"name": "x-newsletter-campaign", "value": " 42 "})
    (event,) = classify(data)
    assert isinstance(event, BounceEvent) and event.campaign == "42"


def test_unknown_types_are_ignored_with_a_reason() -> None:
    (event,) = classify({"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have..."})
    assert isinstance(event, IgnoredEvent)
    assert "AmazonSnsSubscriptionSucceeded" in event.reason and event.type == "AmazonSnsSubscriptionSucceeded"


def test_a_json_array_of_notifications_gives_all_their_events() -> None:
    files = [
        "notification-examples--bounce-notification-with-a-dsn.json",
        "notification-examples--amazon-sns-delivery-notification-example.json",
    ]
    events = classify(json.dumps([json.loads((SES_DIR / f).read_text()) for f in files]))
    assert [type(e) for e in events] == [BounceEvent, DeliveryEvent]


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ("{", "not JSON"),
        ("3", "not a JSON object"),
        ({"mail": {}}, "neither notificationType nor eventType"),
        ({"notificationType": "Bounce", "mail": {"messageId": "m"}}, "bounce is missing"),
        ({"notificationType": "Bounce", "bounce": {}, "mail": {"messageId": "m"}}, "bounce.bounceType"),
        (
            {"notificationType": "Bounce", "bounce": {"bounceType": "Soft"}, "mail": {"messageId": "m"}},
            "'Soft'",
        ),
        (
            {
                "eventType": "Complaint",
                "complaint": {"complainedRecipients": "x"},
                "mail": {"messageId": "m"},
            },
            "complainedRecipients",
        ),
        ({"notificationType": "Delivery", "delivery": {"recipients": []}}, "mail is missing"),
        (
            {
                "notificationType": "Delivery",
                "delivery": {"recipients": [], "timestamp": "yesterday"},
                "mail": {"messageId": "m"},
            },
            "ISO 8601",
        ),
    ],
)
def test_malformed_notifications_are_one_line_input_errors(payload: object, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        classify(payload)
    assert "\n" not in str(info.value)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=30,
)
KEYS = st.sampled_from(
    ["notificationType", "eventType", "bounce", "complaint", "delivery", "mail", "messageId", "bounceType",
     "bouncedRecipients", "complainedRecipients", "emailAddress", "timestamp", "feedbackId", "recipients",
     "headers", "name", "value", "destination", "reject", "click", "link", "subscription"]
)  # fmt: skip
TYPES = st.sampled_from(
    ["Bounce", "Complaint", "Delivery", "Send", "Reject", "Open", "Click", "DeliveryDelay",
     "Rendering Failure", "Subscription", "Permanent", "Transient", "2016-01-27T14:59:38.237Z"]
)  # fmt: skip
SESISH = st.recursive(
    st.none() | st.booleans() | st.integers() | TYPES | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSONISH, SESISH, JSONISH.map(json.dumps), st.text(max_size=50)))
def test_classifier_raises_nothing_but_input_error(payload: object) -> None:
    try:
        events = classify(payload)
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(events, list)
        actions_for(events)  # the policy takes whatever the classifier returns


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(EXPECTED)), st.data())
def test_mutated_fixtures_raise_nothing_but_input_error(name: str, data: st.DataObject) -> None:
    """A real notification with one value somewhere replaced by arbitrary JSON."""
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


# --- policy ------------------------------------------------------------------------------------------

AT = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)


def test_policy_permanent_bounce_suppresses_as_hard_bounce() -> None:
    actions = actions_for(classify(samples.bounce_notification("a@x.org", message_id="m1", at=AT)))
    assert [type(a) for a in actions] == [Suppress, LedgerMark]
    suppress = actions[0]
    assert isinstance(suppress, Suppress) and suppress.reason == "hard_bounce" and suppress.email == "a@x.org"
    assert "5.1.1" in suppress.evidence and "Permanent/General" in suppress.evidence
    assert actions[1] == LedgerMark("m1", "a@x.org", "bounced")


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_policy_transient_and_undetermined_bounces_are_soft(bounce_type: Any) -> None:
    notification = samples.bounce_notification("a@x.org", message_id="m1", at=AT, bounce_type=bounce_type)
    actions = actions_for(classify(notification))
    assert [type(a) for a in actions] == [SoftBounce, LedgerMark]
    assert actions[0].email == "a@x.org"


def test_policy_complaint_suppresses_and_unsubscribes() -> None:
    actions = actions_for(classify(samples.complaint_notification("b@x.org", message_id="m2", at=AT)))
    assert actions[:2] == [
        Unsubscribe("b@x.org"),
        Suppress("b@x.org", "complaint", actions[1].evidence),  # type: ignore[union-attr]
    ]
    assert "abuse" in actions[1].evidence  # type: ignore[union-attr]
    assert actions[2] == LedgerMark("m2", "b@x.org", "complained")


def test_policy_not_spam_feedback_is_not_a_complaint() -> None:
    assert (
        actions_for(
            classify(
                samples.complaint_notification("b@x.org", message_id="m", at=AT, feedback_type="not-spam")
            )
        )
        == []
    )


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
def test_policy_table_over_the_fixtures(name: str, expected: list[type]) -> None:
    assert [type(a) for a in actions_for(classify((SES_DIR / name).read_text()))] == expected


def test_policy_drops_repeated_actions() -> None:
    notification = samples.bounce_notification("a@x.org", message_id="m1", at=AT)
    assert actions_for(classify(notification) * 2) == actions_for(classify(notification))


def test_samples_are_shaped_like_the_documentation_examples() -> None:
    doc = json.loads((SES_DIR / "notification-examples--bounce-notification-with-a-dsn.json").read_text())
    sample = samples.bounce_notification("a@x.org", message_id="m1", at=AT, campaign="7")
    assert _shape(sample) == _shape(doc)
    doc = json.loads(
        (SES_DIR / "notification-examples--complaint-notification-with-a-feedback-report.json").read_text()
    )
    assert _shape(samples.complaint_notification("a@x.org", message_id="m1", at=AT)) == _shape(doc)
    (event,) = classify(sample)
    assert isinstance(event, BounceEvent) and event.campaign == "7" and event.timestamp == AT


def _shape(value: Any) -> Any:
    """Keys and value types, recursively (lists by their first item); ``callerIdentity`` is optional."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in {"callerIdentity", "date"}}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__
