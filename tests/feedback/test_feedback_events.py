"""SES notification classification and the bounce/complaint policy.

Notifications come from the factory in support/ses.py, built from the fields the SES developer guide
documents (both the identity-notification and the event-publishing forms, every event type the
classifier handles), and from mailer.feedback.samples (what the demo sends). tests/real_world/
test_real_ses.py replays the guide's own examples and the real SES messages inside signed SNS ones.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ses
from support.ses import AT

from mailer.errors import InputError
from mailer.feedback import samples
from mailer.feedback.events import (
    BOUNCE_TYPES,
    BouncedRecipient,
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
    SesEvent,
    SubscriptionEvent,
)
from mailer.feedback.policy import (
    LedgerMark,
    ResetSoftBounces,
    SoftBounce,
    Suppress,
    Unsubscribe,
    actions_for,
)
from mailer.feedback.ses_events import classify
from mailer.feedback.sns import parse_sns_message
from mailer.testing.sns_signer import SnsSigner

JANE, RICHARD, MARY = "jane@example.com", "richard@example.com", "mary@example.com"
LINK = "https://news.example.org/issues/6#nova"

# name -> (notification, event class, the fields that identify it: written out, not read back)
CASES: dict[str, tuple[dict[str, Any], type, dict[str, Any]]] = {
    "bounce-with-a-dsn": (
        ses.bounce(JANE, message_id="m-dsn"),
        BounceEvent,
        {"bounce_type": "Permanent", "sub_type": "General", "message_id": "m-dsn",
         "reporting_mta": "dns; email.example.com"},
    ),
    "bounce-without-a-dsn-two-recipients": (
        ses.bounce([JANE, RICHARD], dsn=False, message_id="m-no-dsn"),
        BounceEvent,
        {"bounce_type": "Permanent", "reporting_mta": None,
         "recipients": (BouncedRecipient(JANE), BouncedRecipient(RICHARD))},
    ),
    "bounce-transient-three-recipients": (
        ses.bounce([JANE, MARY, RICHARD], bounce_type="Transient", message_id="m-soft"),
        BounceEvent,
        {"bounce_type": "Transient", "sub_type": "MailboxFull",
         "recipients": tuple(
             BouncedRecipient(e, "failed", "4.2.2", f"smtp; 452 4.2.2 <{e}>... Mailbox full")
             for e in (JANE, MARY, RICHARD)
         )},
    ),
    "bounce-undetermined-suppressed-subtype": (
        ses.bounce(JANE, bounce_type="Undetermined", sub_type="Suppressed"),
        BounceEvent,
        {"bounce_type": "Undetermined", "sub_type": "Suppressed"},
    ),
    "complaint-with-a-feedback-report": (
        ses.complaint(RICHARD, message_id="m-report"),
        ComplaintEvent,
        {"recipients": (RICHARD,), "feedback_type": "abuse", "user_agent": "AnyCompany Feedback Loop (V0.01)",
         "arrival_date": AT, "message_id": "m-report"},
    ),
    "complaint-without-a-feedback-report": (
        ses.complaint(RICHARD, feedback_report=False),
        ComplaintEvent,
        {"recipients": (RICHARD,), "feedback_type": None, "arrival_date": None, "user_agent": None},
    ),
    "delivery": (
        ses.delivery(JANE, processing_time_ms=546, smtp_response="250 ok:  Message 64111812 accepted"),
        DeliveryEvent,
        {"recipients": (JANE,), "processing_time_ms": 546, "timestamp": AT,
         "smtp_response": "250 ok:  Message 64111812 accepted"},
    ),
    "event-bounce": (
        ses.bounce(JANE, form="event", message_id="m-event"),
        BounceEvent,
        {"bounce_type": "Permanent", "message_id": "m-event"},
    ),
    "event-complaint": (
        ses.complaint(JANE, form="event"),
        ComplaintEvent,
        {"feedback_type": "abuse", "recipients": (JANE,), "sub_type": None},
    ),
    "event-delivery-two-recipients": (
        ses.delivery([JANE, MARY], form="event", processing_time_ms=11893),
        DeliveryEvent,
        {"processing_time_ms": 11893, "recipients": (JANE, MARY)},
    ),
    "event-send": (
        ses.send_event(JANE),
        SendEvent,
        {"recipients": (JANE,), "timestamp": AT - dt.timedelta(seconds=30)},  # the mail's: sent 30 s before
    ),
    "event-reject": (
        ses.reject_event(JANE, reason="Bad content"),
        RejectEvent,
        {"reason": "Bad content", "recipients": (JANE,)},
    ),
    "event-delivery-delay": (
        ses.delivery_delay_event(JANE),
        DeliveryDelayEvent,
        {"delay_type": "TransientCommunicationFailure", "expiration_time": AT + dt.timedelta(hours=12),
         "recipients": (BouncedRecipient(JANE, None, "4.4.1", "smtp; 421 4.4.1 Unable to connect"),)},
    ),
    "event-open": (
        ses.open_event(JANE),
        OpenEvent,
        {"recipients": (JANE,), "user_agent": "Mozilla/5.0 (X11; Linux)"},
    ),
    "event-click": (ses.click_event(JANE, link=LINK), ClickEvent, {"link": LINK, "timestamp": AT}),
    "event-rendering-failure": (
        ses.rendering_failure_event(JANE, template="MyTemplate", error="Attribute 'name' is not present"),
        RenderingFailureEvent,
        {"template_name": "MyTemplate", "error_message": "Attribute 'name' is not present", "campaign": None},
    ),
    "event-subscription-unsubscribe-all": (
        ses.subscription_event(JANE, unsubscribe_all=True, contact_list="Newsletter"),
        SubscriptionEvent,
        {"unsubscribe_all": True, "contact_list": "Newsletter", "source": "UnsubscribeHeader"},
    ),
    "event-subscription-one-topic": (
        ses.subscription_event(JANE, unsubscribe_all=False),
        SubscriptionEvent,
        {"unsubscribe_all": False, "recipients": (JANE,)},
    ),
}  # fmt: skip


def test_every_event_type_has_a_case_and_the_three_feedback_types_both_forms() -> None:
    handled = set(get_args(SesEvent)) - {IgnoredEvent}
    assert {cls for _, cls, _ in CASES.values()} == handled
    forms = {
        (note.get("notificationType") or note["eventType"], "eventType" in note)
        for note, _, _ in CASES.values()
    }
    for kind in ("Bounce", "Complaint", "Delivery"):
        assert {(kind, False), (kind, True)} <= forms, kind


@pytest.mark.parametrize("name", sorted(CASES))
def test_notification_classifies_into_the_expected_event(name: str) -> None:
    notification, cls, fields = CASES[name]
    events = classify(json.dumps(notification))
    assert len(events) == 1
    event = events[0]
    assert type(event) is cls
    for key, value in fields.items():
        assert getattr(event, key) == value, key
    with pytest.raises(AttributeError):
        event.message_id = "changed"  # type: ignore[misc]  # frozen


@pytest.mark.parametrize("name", sorted(CASES))
def test_notifications_built_here_use_only_the_documented_fields(name: str) -> None:
    assert ses.undocumented(CASES[name][0]) == []


def test_the_samples_use_only_the_documented_fields() -> None:
    """What the demo sends (mailer.feedback.samples) is shaped as the guide documents."""
    built = [samples.bounce_notification(JANE, message_id="m", at=AT, bounce_type=t) for t in BOUNCE_TYPES]
    built += [
        samples.complaint_notification(JANE, message_id="m", at=AT, feedback_type=t) for t in ("abuse", None)
    ]
    assert [ses.undocumented(note) for note in built] == [[]] * 5
    sample = samples.bounce_notification(JANE, message_id="m1", at=AT, campaign="7")
    (event,) = classify(sample)
    assert isinstance(event, BounceEvent) and event.campaign == "7" and event.timestamp == AT


def test_undocumented_fields_are_noticed() -> None:
    """The check above can fail: a field the guide does not list, or a required one missing."""
    note = ses.bounce(JANE)
    note["bounce"]["bounceReason"] = "made up"
    del note["mail"]["messageId"]
    note["bounce"]["bouncedRecipients"][0]["smtpStatus"] = "550"
    assert ses.undocumented(note) == [
        "mail.messageId: missing",
        "bounce.bounceReason: undocumented",
        "bouncedRecipients.smtpStatus: undocumented",
    ]


def test_bounce_with_dsn_keeps_the_diagnostic_per_recipient() -> None:
    (event,) = classify(
        ses.bounce([JANE, MARY], at=dt.datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=dt.UTC))
    )
    assert isinstance(event, BounceEvent)
    assert [r.email for r in event.recipients] == [JANE, MARY]
    recipient = event.recipients[0]
    assert recipient.status == "5.1.1" and recipient.action == "failed"
    assert recipient.diagnostic_code == "smtp; 550 5.1.1 <jane@example.com>... User unknown"
    assert event.recipients[1].diagnostic_code == "smtp; 550 5.1.1 <mary@example.com>... User unknown"
    assert event.timestamp == dt.datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=dt.UTC)
    assert event.reporting_mta == "dns; email.example.com"


def test_ses_messages_inside_signed_sns_notifications() -> None:
    """As SNS carries them: the identity form with no Subject, the event form with SES's Subject and the
    newline SES ends its Message with."""
    signer = SnsSigner()
    bounce = parse_sns_message(
        signer.envelope(ses.bounce("bounce@simulator.amazonses.com", message_id="m-b"))
    )
    (event,) = classify(bounce.message)
    assert isinstance(event, BounceEvent)
    assert event.recipients[0].email == "bounce@simulator.amazonses.com" and event.message_id == "m-b"
    note = json.dumps(ses.complaint("complaint@simulator.amazonses.com", form="event")) + "\n"
    complaint = parse_sns_message(
        signer.envelope(note, subject="Amazon SES Email Event Notification", version="2")
    )
    assert complaint.message.endswith("}\n")
    (event,) = classify(complaint.message)
    assert isinstance(event, ComplaintEvent)
    assert event.recipients == ("complaint@simulator.amazonses.com",) and event.sub_type is None


def test_campaign_header_is_read_from_the_original_headers() -> None:
    data = ses.bounce(JANE)
    data["mail"]["headers"].append({"name": "x-newsletter-campaign", "value": " 42 "})
    (event,) = classify(data)
    assert isinstance(event, BounceEvent) and event.campaign == "42"
    (event,) = classify(ses.complaint(JANE, campaign="43", form="event"))
    assert isinstance(event, ComplaintEvent) and event.campaign == "43"
    (event,) = classify(ses.rendering_failure_event(JANE, template="T", error="E"))
    assert isinstance(event, RenderingFailureEvent) and event.campaign is None  # no headers, no error


def test_unknown_types_are_ignored_with_a_reason() -> None:
    (event,) = classify({"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have..."})
    assert isinstance(event, IgnoredEvent)
    assert "AmazonSnsSubscriptionSucceeded" in event.reason and event.type == "AmazonSnsSubscriptionSucceeded"
    note = ses.send_event(JANE, message_id="m-new")
    note["eventType"] = "SomethingNew"
    (event,) = classify(note)
    assert isinstance(event, IgnoredEvent) and event.message_id == "m-new"


def test_a_json_array_of_notifications_gives_all_their_events() -> None:
    events = classify(json.dumps([ses.bounce(JANE), ses.delivery(JANE, form="event")]))
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
@given(st.sampled_from(sorted(CASES)), st.data())
def test_mutated_notifications_raise_nothing_but_input_error(name: str, data: st.DataObject) -> None:
    """A notification with one value somewhere replaced by arbitrary JSON."""
    doc = copy.deepcopy(CASES[name][0])
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


# case -> the types of the actions the policy takes
POLICY: dict[str, list[type]] = {
    "bounce-with-a-dsn": [Suppress, LedgerMark],
    "bounce-without-a-dsn-two-recipients": [Suppress, LedgerMark, Suppress, LedgerMark],
    "bounce-transient-three-recipients": [SoftBounce, LedgerMark] * 3,
    "bounce-undetermined-suppressed-subtype": [SoftBounce, LedgerMark],
    "complaint-with-a-feedback-report": [Unsubscribe, Suppress, LedgerMark],
    "complaint-without-a-feedback-report": [Unsubscribe, Suppress, LedgerMark],
    "delivery": [ResetSoftBounces, LedgerMark],
    "event-bounce": [Suppress, LedgerMark],
    "event-complaint": [Unsubscribe, Suppress, LedgerMark],
    "event-delivery-two-recipients": [ResetSoftBounces, LedgerMark, ResetSoftBounces, LedgerMark],
    "event-send": [],
    "event-reject": [],
    "event-delivery-delay": [],
    "event-open": [],
    "event-click": [],
    "event-rendering-failure": [],
    "event-subscription-unsubscribe-all": [Unsubscribe],
    "event-subscription-one-topic": [],
}


def test_the_policy_table_names_every_case() -> None:
    assert sorted(POLICY) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(POLICY))
def test_policy_table_over_every_case(name: str) -> None:
    assert [type(a) for a in actions_for(classify(json.dumps(CASES[name][0])))] == POLICY[name]


def test_policy_drops_repeated_actions() -> None:
    notification = samples.bounce_notification("a@x.org", message_id="m1", at=AT)
    assert actions_for(classify(notification) * 2) == actions_for(classify(notification))
