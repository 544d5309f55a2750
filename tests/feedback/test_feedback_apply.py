"""Applying feedback to a real database (SQLite and PostgreSQL through the ``database_url`` fixture).

Uses the real signed SNS fixtures (shared/fixtures/sns, django-ses tests, MIT) with their certificates,
and locally generated SES notifications from mailer.feedback.samples.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from support.paths import SHARED_FIXTURES

from mailer.errors import InputError
from mailer.feedback import samples
from mailer.feedback.apply import SKIP_VERIFICATION, receive_stepwise
from mailer.feedback.models import FeedbackMessage
from mailer.feedback.sns import CachedCertificates, CertificateDirectory, SnsSignatureError, SnsVerifier
from mailer.sending.models import Campaign, Delivery, SegmentRendering
from subscribers.db import make_session_factory, open_database
from subscribers.models import Subscriber, SubscriberEvent, Suppression
from subscribers.preferences import add_subscriber

SNS_DIR = SHARED_FIXTURES / "sns"
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
LIMIT = 3


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = open_database(database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        for email in ("jane@example.com", "richard@example.com", "bounce@simulator.amazonses.com",
                      "complaint@simulator.amazonses.com", "soft@example.com"):  # fmt: skip
            add_subscriber(session, email, now=NOW)
        session.commit()
    yield factory
    engine.dispose()


def lenient() -> SnsVerifier:
    return SnsVerifier(
        CachedCertificates(CertificateDirectory(SNS_DIR / "certs")),
        max_age=None,
        check_validity=False,
        topic_arns={  # the fixtures' topics
            "arn:aws:sns:us-east-1:364852123998:test-email",
            "arn:aws:sns:us-east-2:295079676684:publish-and-verify-62674b1d-4295-426b-88e7-5fb75652a04e",
            "arn:aws:sns:us-east-1:246796806071:snsNetTest",
        },
    )


def subscriber(sessions: sessionmaker[Session], email: str) -> Subscriber:
    with sessions() as session:
        found = session.scalar(select(Subscriber).where(Subscriber.email_key == email.lower()))
        assert found is not None
        return found


def suppression_reason(sessions: sessionmaker[Session], email: str) -> str | None:
    with sessions() as session:
        return session.scalar(select(Suppression.reason).where(Suppression.email_key == email.lower()))


def table_counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(FeedbackMessage)) or 0,
            session.scalar(select(func.count()).select_from(Suppression)) or 0,
            session.scalar(select(func.count()).select_from(SubscriberEvent)) or 0,
        )


def feed(sessions: sessionmaker[Session], body: object, verifier: object = None) -> object:
    return receive_stepwise(
        body,  # type: ignore[arg-type]
        sessions=sessions,
        verifier=verifier or lenient(),  # type: ignore[arg-type]
        now=NOW,
        soft_bounce_limit=LIMIT,
    )


def test_signed_bounce_suppresses_and_sets_status(sessions: sessionmaker[Session]) -> None:
    result = feed(sessions, (SNS_DIR / "notification-ses-bounce-no-subject-sigv1.json").read_bytes())
    assert result.verified and not result.duplicate  # type: ignore[attr-defined]
    assert subscriber(sessions, "bounce@simulator.amazonses.com").status == "bounced"
    assert suppression_reason(sessions, "bounce@simulator.amazonses.com") == "hard_bounce"
    assert any("suppressed (hard_bounce)" in line for line in result.lines())  # type: ignore[attr-defined]
    with sessions() as session:
        row = session.scalar(select(FeedbackMessage))
        assert row is not None and row.message_id == "71a6b82e-0f1a-58db-b902-e2ef60f87541"
        assert json.loads(row.body)["Signature"].startswith("K27nwTcT")
        assert row.verified and "hard_bounce" in (row.outcome or "")


def test_signed_complaint_suppresses_and_unsubscribes(sessions: sessionmaker[Session]) -> None:
    feed(sessions, (SNS_DIR / "notification-ses-event-complaint-sigv1.json").read_text())
    email = "complaint@simulator.amazonses.com"
    assert subscriber(sessions, email).status == "complained"
    assert suppression_reason(sessions, email) == "complaint"
    with sessions() as session:
        kinds = list(session.scalars(select(SubscriberEvent.kind).where(SubscriberEvent.email_key == email)))
    assert "unsubscribed" in kinds and "complained" in kinds and "suppressed" in kinds


def test_duplicate_delivery_changes_nothing(sessions: sessionmaker[Session]) -> None:
    body = (SNS_DIR / "notification-ses-bounce-no-subject-sigv1.json").read_text()
    feed(sessions, body)
    before = table_counts(sessions)
    again = feed(sessions, body)
    assert again.duplicate and again.lines()[0].endswith("nothing changed")  # type: ignore[attr-defined]
    assert table_counts(sessions) == before


def test_a_duplicate_soft_bounce_is_not_counted_twice(sessions: sessionmaker[Session]) -> None:
    notification = samples.bounce_notification(
        "soft@example.com", message_id="m1", at=NOW, bounce_type="Transient"
    )
    feed(sessions, notification, SKIP_VERIFICATION)
    feed(sessions, json.dumps(notification), SKIP_VERIFICATION)
    assert subscriber(sessions, "soft@example.com").soft_bounces == 1


def test_the_same_bounce_under_two_sns_messages_counts_once(sessions: sessionmaker[Session]) -> None:
    """Identity notification and configuration-set event for one bounce share the feedbackId."""
    notification = samples.bounce_notification(
        "soft@example.com", message_id="m1", at=NOW, bounce_type="Transient"
    )
    feed(sessions, notification, SKIP_VERIFICATION)
    notification["eventType"] = notification.pop("notificationType")
    assert feed(sessions, notification, SKIP_VERIFICATION).duplicate  # type: ignore[attr-defined]
    assert subscriber(sessions, "soft@example.com").soft_bounces == 1


def test_soft_bounces_suppress_at_the_limit(sessions: sessionmaker[Session]) -> None:
    email = "soft@example.com"
    for n in range(1, LIMIT + 1):
        at = NOW + dt.timedelta(days=n)
        kind = "Transient" if n % 2 else "Undetermined"
        result = feed(
            sessions,
            samples.bounce_notification(email, message_id=f"m{n}", at=at, bounce_type=kind),
            SKIP_VERIFICATION,
        )
        assert any(f"soft bounce {n}/{LIMIT}" in line for line in result.lines())  # type: ignore[attr-defined]
        expected = ("bounced", "soft_bounce_limit") if n == LIMIT else ("active", None)
        assert (subscriber(sessions, email).status, suppression_reason(sessions, email)) == expected


def test_a_delivery_resets_the_soft_bounce_count(sessions: sessionmaker[Session]) -> None:
    email = "jane@example.com"
    feed(
        sessions,
        samples.bounce_notification(email, message_id="m1", at=NOW, bounce_type="Transient"),
        SKIP_VERIFICATION,
    )
    assert subscriber(sessions, email).soft_bounces == 1
    delivery = json.loads(
        (
            SHARED_FIXTURES / "ses" / "notification-examples--amazon-sns-delivery-notification-example.json"
        ).read_text()
    )
    result = feed(sessions, delivery, SKIP_VERIFICATION)
    assert subscriber(sessions, email).soft_bounces == 0
    assert any("soft bounce count 1 -> 0" in line for line in result.lines())  # type: ignore[attr-defined]


def test_bare_notification_needs_the_explicit_skip(sessions: sessionmaker[Session]) -> None:
    notification = samples.complaint_notification("jane@example.com", message_id="m1", at=NOW)
    with pytest.raises(SnsSignatureError, match="bare SES notification"):
        feed(sessions, notification, lenient())
    assert table_counts(sessions)[0] == 0
    result = feed(sessions, notification, SKIP_VERIFICATION)
    assert not result.verified and result.key.startswith("local-")  # type: ignore[attr-defined]
    assert subscriber(sessions, "jane@example.com").status == "complained"


def test_unverifiable_messages_store_nothing(sessions: sessionmaker[Session]) -> None:
    data = json.loads((SNS_DIR / "notification-ses-bounce-no-subject-sigv1.json").read_text())
    data["Message"] = data["Message"].replace("Permanent", "Transient")
    with pytest.raises(SnsSignatureError):
        feed(sessions, data)
    unsigned = (SNS_DIR / "http-examples-unsigned" / "http-https-notification-json-format.http").read_text()
    with pytest.raises(SnsSignatureError):
        feed(sessions, unsigned.partition("\n\n")[2])
    assert table_counts(sessions)[0] == 0
    assert subscriber(sessions, "bounce@simulator.amazonses.com").status == "active"


def test_verified_message_with_a_non_ses_payload_is_stored_then_refused(
    sessions: sessionmaker[Session],
) -> None:
    body = (SNS_DIR / "notification-sigv2-sha256.json").read_text()  # Message: "Hello world"
    with pytest.raises(InputError, match="not JSON"):
        feed(sessions, body)
    assert feed(sessions, body).duplicate  # type: ignore[attr-defined]
    with sessions() as session:
        row = session.scalar(select(FeedbackMessage))
        assert row is not None and "not JSON" in (row.outcome or "")


def test_subscription_confirmation_is_stored_and_hands_back_the_url(sessions: sessionmaker[Session]) -> None:
    result = feed(sessions, (SNS_DIR / "subscriptionconfirmation-sigv1.json").read_text())
    assert result.kind == "SubscriptionConfirmation"  # type: ignore[attr-defined]
    assert result.subscribe_url.startswith("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription")  # type: ignore[attr-defined]
    assert table_counts(sessions)[0] == 1
    assert feed(sessions, (SNS_DIR / "subscriptionconfirmation-sigv1.json").read_text()).duplicate  # type: ignore[attr-defined]


def test_feedback_for_unknown_addresses_still_suppresses(sessions: sessionmaker[Session]) -> None:
    result = feed(
        sessions,
        samples.bounce_notification("stranger@example.com", message_id="m", at=NOW),
        SKIP_VERIFICATION,
    )
    assert suppression_reason(sessions, "stranger@example.com") == "hard_bounce"
    assert any("no subscriber with this address" in line for line in result.lines())  # type: ignore[attr-defined]


def test_an_invalid_recipient_address_is_skipped_not_fatal(sessions: sessionmaker[Session]) -> None:
    notification = samples.bounce_notification("not an address", message_id="m", at=NOW)
    result = feed(sessions, notification, SKIP_VERIFICATION)
    assert any("skipped" in line for line in result.lines())  # type: ignore[attr-defined]
    assert table_counts(sessions)[:2] == (1, 0)


def test_feedback_names_the_ledger_row_of_the_original_message(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        campaign = Campaign(
            issue_source="i.md",
            issue_markdown="# i",
            issue_hash="0" * 64,
            subject="S",
            transport="file",
            nonce="n",
        )
        session.add(campaign)
        session.flush()
        segment = SegmentRendering(
            campaign_id=campaign.id,
            segment_key="",
            subject="S",
            preheader="",
            html="",
            text="",
            section_headings="[]",
        )
        session.add(segment)
        session.flush()
        jane = subscriber(sessions, "jane@example.com")
        delivery = Delivery(
            campaign_id=campaign.id, subscriber_id=jane.id, segment_id=segment.id, email="jane@example.com",
            status="sent", message_id="ses-message-1",
        )  # fmt: skip
        session.add(delivery)
        session.commit()
        ids = (delivery.id, campaign.id)
    notification = samples.bounce_notification(
        "jane@example.com", message_id="ses-message-1", at=NOW, campaign="7"
    )
    lines = feed(sessions, notification, SKIP_VERIFICATION).lines()  # type: ignore[attr-defined]
    assert "campaign 7" in lines[1]
    assert (
        f"  ledger: jane@example.com: bounced; delivery {ids[0]} of campaign {ids[1]} (ledger: sent)" in lines
    )
    other = samples.complaint_notification("richard@example.com", message_id="elsewhere", at=NOW)
    assert any("not in the ledger" in line for line in feed(sessions, other, SKIP_VERIFICATION).lines())  # type: ignore[attr-defined]
