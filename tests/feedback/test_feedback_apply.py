"""Applying feedback to a real database (SQLite and PostgreSQL through the ``database_url`` fixture).

SNS messages are signed here (mailer.testing.sns_signer) and verified with every check on; the SES
notifications inside come from support/ses.py and mailer.feedback.samples. tests/real_world/
test_real_sns.py applies the AWS-signed messages of ../shared/fixtures the same way when it exists.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from support import ses
from support.sns import documentation_example, split_http_text

from mailer.errors import InputError
from mailer.feedback import samples
from mailer.feedback.apply import SKIP_VERIFICATION, Verification, receive_stepwise
from mailer.feedback.models import FeedbackMessage
from mailer.feedback.results import FeedbackResult
from mailer.feedback.sns import SUBSCRIPTION_CONFIRMATION, SnsSignatureError, SnsVerifier
from mailer.feedback.sns_hosts import CachedCertificates
from mailer.sending.models import Campaign, Delivery, SegmentRendering
from mailer.testing.sns_signer import DEFAULT_TOPIC, SnsSigner
from subscribers.db import make_session_factory, open_database
from subscribers.models import Subscriber, SubscriberEvent, Suppression
from subscribers.preferences import add_subscriber

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
SENT = NOW - dt.timedelta(minutes=1)
LIMIT = 3
SIGNER = SnsSigner(valid_from=NOW - dt.timedelta(days=30), valid_days=60)
BOUNCE_ID = "71a6b82e-0f1a-58db-b902-e2ef60f87541"  # the SNS MessageId of the signed bounce


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


def checking() -> SnsVerifier:
    """Every check on: age, certificate dates and names, topic."""
    return SnsVerifier(CachedCertificates(lambda _url: SIGNER.certificate_pem), topic_arns={DEFAULT_TOPIC})


def signed_bounce() -> str:
    """A hard bounce of bounce@simulator.amazonses.com, identity form, SignatureVersion 1, no Subject."""
    notification = ses.bounce("bounce@simulator.amazonses.com", message_id="ses-bounce-1", at=SENT)
    return SIGNER.envelope(notification, message_id=BOUNCE_ID, timestamp=SENT)


def signed_complaint() -> str:
    """A complaint, event-publishing form, with SES's Subject and the newline SES ends Message with."""
    notification = json.dumps(ses.complaint("complaint@simulator.amazonses.com", at=SENT, form="event"))
    return SIGNER.envelope(notification + "\n", subject="Amazon SES Email Event Notification", timestamp=SENT)


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


def feed(
    sessions: sessionmaker[Session],
    body: str | bytes | Mapping[str, Any],
    verification: Verification | None = None,
) -> FeedbackResult:
    return receive_stepwise(
        body, sessions=sessions, verifier=verification or checking(), now=NOW, soft_bounce_limit=LIMIT
    )


def test_signed_bounce_suppresses_and_sets_status(sessions: sessionmaker[Session]) -> None:
    body = signed_bounce()
    result = feed(sessions, body.encode())
    assert result.verified and not result.duplicate
    assert subscriber(sessions, "bounce@simulator.amazonses.com").status == "bounced"
    assert suppression_reason(sessions, "bounce@simulator.amazonses.com") == "hard_bounce"
    assert any("suppressed (hard_bounce)" in line for line in result.lines())
    with sessions() as session:
        row = session.scalar(select(FeedbackMessage))
        assert row is not None and row.message_id == BOUNCE_ID
        assert row.body == body  # stored as received, signature and all
        assert row.verified and "hard_bounce" in (row.outcome or "")


def test_signed_complaint_suppresses_and_unsubscribes(sessions: sessionmaker[Session]) -> None:
    feed(sessions, signed_complaint())
    email = "complaint@simulator.amazonses.com"
    assert subscriber(sessions, email).status == "complained"
    assert suppression_reason(sessions, email) == "complaint"
    with sessions() as session:
        kinds = list(session.scalars(select(SubscriberEvent.kind).where(SubscriberEvent.email_key == email)))
    assert "unsubscribed" in kinds and "complained" in kinds and "suppressed" in kinds


def test_a_signed_bounce_of_several_recipients_without_a_dsn_bounces_each(
    sessions: sessionmaker[Session],
) -> None:
    notification = ses.bounce(["jane@example.com", "richard@example.com"], dsn=False, at=SENT)
    result = feed(sessions, SIGNER.envelope(notification, version="2", timestamp=SENT))
    assert result.verified
    for email in ("jane@example.com", "richard@example.com"):
        assert subscriber(sessions, email).status == "bounced"
        assert suppression_reason(sessions, email) == "hard_bounce"


def test_duplicate_delivery_changes_nothing(sessions: sessionmaker[Session]) -> None:
    body = signed_bounce()
    feed(sessions, body)
    before = table_counts(sessions)
    again = feed(sessions, body)
    assert again.duplicate and again.lines()[0].endswith("nothing changed")
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
    assert feed(sessions, notification, SKIP_VERIFICATION).duplicate
    assert subscriber(sessions, "soft@example.com").soft_bounces == 1


def test_soft_bounces_suppress_at_the_limit(sessions: sessionmaker[Session]) -> None:
    email = "soft@example.com"
    for n in range(1, LIMIT + 1):
        at = NOW + dt.timedelta(days=n)
        kind: Literal["Transient", "Undetermined"] = "Transient" if n % 2 else "Undetermined"
        result = feed(
            sessions,
            samples.bounce_notification(email, message_id=f"m{n}", at=at, bounce_type=kind),
            SKIP_VERIFICATION,
        )
        assert any(f"soft bounce {n}/{LIMIT}" in line for line in result.lines())
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
    delivery = ses.delivery(email)
    result = feed(sessions, delivery, SKIP_VERIFICATION)
    assert subscriber(sessions, email).soft_bounces == 0
    assert any("soft bounce count 1 -> 0" in line for line in result.lines())


def test_bare_notification_needs_the_explicit_skip(sessions: sessionmaker[Session]) -> None:
    notification = samples.complaint_notification("jane@example.com", message_id="m1", at=NOW)
    with pytest.raises(SnsSignatureError, match="bare SES notification"):
        feed(sessions, notification, checking())
    assert table_counts(sessions)[0] == 0
    result = feed(sessions, notification, SKIP_VERIFICATION)
    assert not result.verified and result.key.startswith("local-")
    assert subscriber(sessions, "jane@example.com").status == "complained"


def test_unverifiable_messages_store_nothing(sessions: sessionmaker[Session]) -> None:
    data = json.loads(signed_bounce())
    data["Message"] = data["Message"].replace("Permanent", "Transient")
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        feed(sessions, data)
    example = documentation_example(
        "Notification", topic_arn=DEFAULT_TOPIC, signing_cert_url=SIGNER.cert_url, at=SENT
    )
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        feed(sessions, split_http_text(example)[1])
    assert table_counts(sessions)[0] == 0
    assert subscriber(sessions, "bounce@simulator.amazonses.com").status == "active"


def test_verified_message_with_a_non_ses_payload_is_stored_then_refused(
    sessions: sessionmaker[Session],
) -> None:
    """Stored once, with its error, and refused each time: never "duplicate, already applied"."""
    body = SIGNER.envelope("Hello world", version="2", timestamp=SENT)
    for _ in range(2):
        with pytest.raises(InputError, match="not JSON"):
            feed(sessions, body)
    assert table_counts(sessions)[0] == 1
    with sessions() as session:
        row = session.scalar(select(FeedbackMessage))
        assert row is not None and "not JSON" in (row.outcome or "")


def test_subscription_confirmation_is_stored_and_hands_back_the_url(sessions: sessionmaker[Session]) -> None:
    body = SIGNER.envelope("You have chosen to subscribe...", kind=SUBSCRIPTION_CONFIRMATION, timestamp=SENT)
    result = feed(sessions, body)
    assert result.kind == "SubscriptionConfirmation"
    assert result.subscribe_url is not None and result.subscribe_url == json.loads(body)["SubscribeURL"]
    assert result.subscribe_url.startswith("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription")
    assert table_counts(sessions)[0] == 1
    assert feed(sessions, body).duplicate


def test_feedback_for_unknown_addresses_still_suppresses(sessions: sessionmaker[Session]) -> None:
    result = feed(
        sessions,
        samples.bounce_notification("stranger@example.com", message_id="m", at=NOW),
        SKIP_VERIFICATION,
    )
    assert suppression_reason(sessions, "stranger@example.com") == "hard_bounce"
    assert any("no subscriber with this address" in line for line in result.lines())


def test_an_invalid_recipient_address_is_skipped_not_fatal(sessions: sessionmaker[Session]) -> None:
    notification = samples.bounce_notification("not an address", message_id="m", at=NOW)
    result = feed(sessions, notification, SKIP_VERIFICATION)
    assert any("skipped" in line for line in result.lines())
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
    lines = feed(sessions, notification, SKIP_VERIFICATION).lines()
    assert "campaign 7" in lines[1]
    assert (
        f"  ledger: jane@example.com: bounced; delivery {ids[0]} of campaign {ids[1]} (ledger: sent)" in lines
    )
    other = samples.complaint_notification("richard@example.com", message_id="elsewhere", at=NOW)
    assert any("not in the ledger" in line for line in feed(sessions, other, SKIP_VERIFICATION).lines())
