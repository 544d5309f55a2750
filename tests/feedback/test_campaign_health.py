"""Campaign health: the verdict on a campaign's bounce and complaint counts (pure), and the counting and
pausing as feedback is applied (both databases)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from mailer.feedback.apply import SKIP_VERIFICATION, receive_stepwise
from mailer.feedback.samples import bounce_notification, complaint_notification
from mailer.sending.health import HealthLimits, verdict
from mailer.sending.models import Campaign, Delivery, SegmentRendering
from subscribers.db import make_session_factory, open_database

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
LIMITS = HealthLimits(bounce_rate=0.05, complaint_rate=0.001, min_sent=100)


def test_no_verdict_below_the_minimum_sample_or_within_the_limits():
    assert verdict(LIMITS, sent=99, bounced=50, complained=50) is None
    assert verdict(LIMITS, sent=0, bounced=0, complained=0) is None
    assert verdict(LIMITS, sent=1000, bounced=50, complained=1) is None  # exactly at the limits


def test_a_rate_past_its_limit_is_a_reason_naming_the_setting():
    bounces = verdict(LIMITS, sent=1000, bounced=51, complained=0)
    assert bounces and "bounce rate" in bounces and "51 bounces of 1000 sent (5.10%)" in bounces
    assert "NEWSLETTER_PAUSE_BOUNCE_RATE" in bounces
    complaints = verdict(LIMITS, sent=1000, bounced=0, complained=2)
    assert complaints and "complaint rate" in complaints and "NEWSLETTER_PAUSE_COMPLAINT_RATE" in complaints


def _campaign(session, status: str, sent: int) -> int:
    campaign = Campaign(
        issue_source="x.md", issue_markdown="# x", issue_hash="0" * 64, subject="x", audience="subscribers",
        transport="file", status=status, nonce="n", total=sent, sent=sent, created_at=NOW,
    )  # fmt: skip
    session.add(campaign)
    session.flush()
    segment = SegmentRendering(
        campaign_id=campaign.id, segment_key="", subject="x", preheader="", html="", text="",
        section_headings="[]", recipients=sent,
    )  # fmt: skip
    session.add(segment)
    session.flush()
    for i in range(sent):
        session.add(
            Delivery(
                campaign_id=campaign.id, subscriber_id=i + 1, segment_id=segment.id,
                email=f"r{i}@example.org", status="sent", message_id=f"c{campaign.id}-m{i}", queued_at=NOW,
                sent_at=NOW,
            )
        )  # fmt: skip
    session.commit()
    return campaign.id


def _feed(factory, notification) -> None:
    receive_stepwise(
        notification,
        sessions=factory,
        verifier=SKIP_VERIFICATION,
        now=NOW,
        soft_bounce_limit=3,
        health=LIMITS,
    )


@pytest.mark.parametrize("status", ["sending", "done"])
def test_feedback_counts_toward_its_campaign_and_pauses_one_still_sending(database_url, status):
    factory = make_session_factory(open_database(database_url, migrate=True))
    with factory() as session:
        campaign_id = _campaign(session, status, sent=100)
    for i in range(5):  # 5 % exactly: still healthy
        _feed(factory, bounce_notification(f"r{i}@example.org", message_id=f"c{campaign_id}-m{i}", at=NOW))
    soft = bounce_notification(
        "r50@example.org", message_id=f"c{campaign_id}-m50", at=NOW, bounce_type="Transient"
    )
    _feed(factory, soft)  # a soft bounce does not count toward the bounce rate
    with factory() as session:
        campaign = session.get(Campaign, campaign_id)
        assert (campaign.status, campaign.bounced, campaign.complained) == (status, 5, 0)
    _feed(factory, complaint_notification("r60@example.org", message_id=f"c{campaign_id}-m60", at=NOW))
    with factory() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign.complained == 1
        if status == "sending":
            assert campaign.status == "paused" and "complaint rate" in (campaign.status_reason or "")
        else:  # a finished campaign is left as it is
            assert campaign.status == "done" and campaign.status_reason is None
    # the same notification again (SNS redelivers) counts nothing twice
    _feed(factory, complaint_notification("r60@example.org", message_id=f"c{campaign_id}-m60", at=NOW))
    with factory() as session:
        assert session.scalar(select(Campaign.complained).where(Campaign.id == campaign_id)) == 1
