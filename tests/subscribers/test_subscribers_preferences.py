"""Double opt-in, the per-address rate limit, preferences and unsubscribing, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from subscribers.errors import AlreadyExists, InvalidInput, InvalidToken, RateLimited
from subscribers.models import Subscriber, SubscriberEvent
from subscribers.optin import SignupResult, confirm, signup
from subscribers.preferences import (
    TopicChange,
    add_subscriber,
    get_preferences,
    remove_subscriber,
    set_locale,
    set_topics,
    unsubscribe_all,
    unsubscribe_topic,
)
from subscribers.store import stream_audience, sync_topics
from subscribers.suppression import suppress

SECRET = "test-secret"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def session(db_session):
    sync_topics(db_session, [(k, k.title(), None) for k in ("nova", "neutron", "heat")])
    db_session.commit()
    return db_session


def kinds(session, subscriber_id: int) -> list[str]:
    return list(
        session.scalars(
            select(SubscriberEvent.kind)
            .where(SubscriberEvent.subscriber_id == subscriber_id)
            .order_by(SubscriberEvent.id)
        )
    )


def _id(result: SignupResult) -> int:
    assert result.subscriber_id is not None, result
    return result.subscriber_id


def _token(result: SignupResult) -> str:
    assert result.confirm_token is not None, result
    return result.confirm_token


def test_signup_then_confirm_activates(session):
    result = signup(session, "Li.Lei@Example.com", secret=SECRET, topics=["nova"], locale="zh-CN", now=T0)
    session.commit()
    assert result.outcome == "confirmation_sent" and result.confirm_token
    assert get_preferences(session, _id(result)).status == "pending"
    assert list(stream_audience(session, ["nova"])) == []  # pending is not audience

    confirmed = confirm(session, _token(result), secret=SECRET, now=T0 + timedelta(minutes=5))
    session.commit()
    assert confirmed.changed and confirmed.status == "active"
    prefs = get_preferences(session, _id(result))
    assert (prefs.email, prefs.locale, prefs.topics) == ("Li.Lei@example.com", "zh", frozenset({"nova"}))
    [[member]] = list(stream_audience(session, ["nova", "heat"]))
    assert member.segment == frozenset({"nova"})
    # confirming twice is harmless
    assert confirm(session, _token(result), secret=SECRET, now=T0 + timedelta(minutes=6)).changed is False
    assert kinds(session, _id(result)) == ["subscribed", "confirmation_sent", "confirmed"]


def test_confirm_rejects_forged_wrong_purpose_and_expired_tokens(session):
    result = signup(session, "a@example.org", secret=SECRET, now=T0)
    with pytest.raises(InvalidToken):
        confirm(session, _token(result), secret="other", now=T0)
    with pytest.raises(InvalidToken, match="expired"):
        confirm(session, _token(result), secret=SECRET, now=T0 + timedelta(days=8))
    assert get_preferences(session, _id(result)).status == "pending"


def test_one_confirmation_per_address_per_hour(session):
    first = signup(session, "flood@example.org", secret=SECRET, topics=["nova"], now=T0)
    session.commit()
    with pytest.raises(RateLimited) as excinfo:
        signup(session, "FLOOD@example.org", secret=SECRET, topics=["heat"], now=T0 + timedelta(minutes=59))
    assert 0 < excinfo.value.retry_after <= 60
    session.rollback()
    # the refused signup changed nothing
    assert get_preferences(session, _id(first)).topics == frozenset({"nova"})
    later = signup(
        session, "flood@example.org", secret=SECRET, topics=["heat"], now=T0 + timedelta(minutes=61)
    )
    assert later.outcome == "confirmation_sent" and later.subscriber_id == first.subscriber_id
    # the row waits for the owner's click: the second form's choices apply once its link is confirmed
    assert get_preferences(session, _id(first)).topics == frozenset({"nova"})
    confirm(session, _token(later), secret=SECRET, now=T0 + timedelta(minutes=62))
    assert get_preferences(session, _id(first)).topics == frozenset({"heat"})
    # other addresses are not affected by someone else's limit
    assert signup(
        session, "other@example.org", secret=SECRET, now=T0 + timedelta(minutes=62)
    ).send_confirmation


def test_signup_of_active_or_suppressed_address_sends_nothing(session):
    add_subscriber(session, "on@example.org", topics=["nova"], now=T0)
    suppress(session, "blocked@example.org", "complaint", now=T0)
    assert signup(session, "on@example.org", secret=SECRET, now=T0).outcome == "already_active"
    blocked = signup(session, "blocked@example.org", secret=SECRET, now=T0)
    assert blocked.outcome == "suppressed" and blocked.confirm_token is None
    assert session.scalar(select(Subscriber).where(Subscriber.email_key == "blocked@example.org")) is None


def test_confirm_does_not_activate_an_address_suppressed_meanwhile(session):
    result = signup(session, "late@example.org", secret=SECRET, now=T0)
    suppress(session, "late@example.org", "hard_bounce", now=T0)
    confirmed = confirm(session, _token(result), secret=SECRET, now=T0)
    assert not confirmed.changed and confirmed.status == "bounced"


def test_preferences_change_and_log_events(session):
    s = add_subscriber(session, "p@example.org", topics=["nova", "heat"], locale="en", now=T0)
    change = set_topics(session, s.id, ["neutron", "heat"], source="web", now=T0)
    assert change == TopicChange(added=frozenset({"neutron"}), removed=frozenset({"nova"})) and change
    assert not set_topics(session, s.id, ["heat", "neutron"], source="web", now=T0)
    assert unsubscribe_topic(session, s.id, "heat", source="web", now=T0) is True
    assert unsubscribe_topic(session, s.id, "heat", source="web", now=T0) is False
    assert set_locale(session, s.id, "中文", source="web", now=T0) is True
    assert set_locale(session, s.id, "zh", source="web", now=T0) is False
    with pytest.raises(InvalidInput, match="'swift'"):
        set_topics(session, s.id, ["swift"], source="web", now=T0)
    prefs = get_preferences(session, s.id)
    assert (prefs.topics, prefs.locale, prefs.status) == (frozenset({"neutron"}), "zh", "active")
    assert unsubscribe_all(session, s.id, source="web", now=T0) is True
    assert unsubscribe_all(session, s.id, source="web", now=T0) is False
    session.commit()
    assert get_preferences(session, s.id).status == "unsubscribed"
    assert kinds(session, s.id) == [
        "subscribed",
        "topics_changed",
        "topics_changed",
        "locale_changed",
        "unsubscribed",
    ]
    detail = session.scalar(
        select(SubscriberEvent.detail)
        .where(SubscriberEvent.kind == "topics_changed")
        .order_by(SubscriberEvent.id)
    )
    assert json.loads(detail) == {"added": ["neutron"], "removed": ["nova"]}


def test_unsubscribed_can_sign_up_again_through_double_opt_in(session):
    s = add_subscriber(session, "back@example.org", topics=["nova"], locale="zh", now=T0)
    unsubscribe_all(session, s.id, source="web", now=T0)
    again = signup(
        session, "back@example.org", secret=SECRET, topics=["heat"], locale="en", now=T0 + timedelta(days=1)
    )
    assert again.outcome == "confirmation_sent" and again.subscriber_id == s.id
    # anyone can type the address into the form: nothing changes until the owner confirms
    before = get_preferences(session, s.id)
    assert (before.status, before.topics, before.locale) == ("unsubscribed", frozenset({"nova"}), "zh")
    assert confirm(session, _token(again), secret=SECRET, now=T0 + timedelta(days=1)).status == "active"
    after = get_preferences(session, s.id)
    assert (after.status, after.topics, after.locale) == ("active", frozenset({"heat"}), "en")


def test_add_and_remove(session):
    s = add_subscriber(session, "X@Example.org", name="  Xiao\tMing ", topics=["nova"], now=T0)
    assert s.name == "Xiao Ming" and s.email == "X@example.org" and s.email_key == "x@example.org"
    with pytest.raises(AlreadyExists):
        add_subscriber(session, "x@EXAMPLE.org", now=T0)
    suppress(session, "sup@example.org", "hard_bounce", now=T0)
    assert add_subscriber(session, "sup@example.org", status="active", now=T0).status == "bounced"
    removed = remove_subscriber(session, "x@example.org", now=T0)
    session.commit()
    assert session.get(Subscriber, removed.id) is None
    events = session.scalars(
        select(SubscriberEvent).where(SubscriberEvent.email_key == "x@example.org")
    ).all()
    assert [e.kind for e in events] == ["subscribed", "removed"]
    assert all(e.subscriber_id is None for e in events)  # the log outlives the row


def test_two_racing_signups_send_one_confirmation(db_engine, session):
    """Two processes signing the same new address up at once: the second waits for the first's row
    lock, then finds the slot taken. No second confirmation email."""
    import threading
    import time

    from subscribers.db import make_session_factory

    factory = make_session_factory(db_engine)
    first_session, results = factory(), dict[str, SignupResult | RateLimited]()
    first = signup(first_session, "race@example.org", secret=SECRET, now=T0)  # not committed yet

    def second() -> None:
        with factory() as other:
            try:
                results["second"] = signup(other, "race@example.org", secret=SECRET, now=T0)
                other.commit()
            except RateLimited as exc:
                results["second"] = exc

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)  # the second signup is now waiting on the first one's write
    assert "second" not in results
    first_session.commit()
    first_session.close()
    thread.join(timeout=20)
    assert first.send_confirmation
    assert isinstance(results["second"], RateLimited)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 1


def test_concurrent_changes_of_one_subscriber_run_one_after_the_other(session, db_engine):
    """Two saves of the same form at once (a double click): both succeed, the topics end as one of them
    wanted, and the log has no change that did not happen; what each save reports it changed is what the
    log says it did (the preference page shows it)."""
    from concurrent.futures import ThreadPoolExecutor

    from subscribers.db import make_session_factory

    subscriber = add_subscriber(session, "twice@example.org", topics=["nova"], now=T0)
    session.commit()
    factory = make_session_factory(db_engine)
    choices = [["neutron", "heat"], ["heat"], ["nova", "neutron"]] * 6

    def save(topics: list[str]) -> TopicChange:
        with factory() as mine:
            change = set_topics(mine, subscriber.id, topics, source="test", now=T0)
            mine.commit()
            return change

    with ThreadPoolExecutor(6) as pool:
        reported = [c for c in pool.map(save, choices) if c]
    session.expire_all()
    final = get_preferences(session, subscriber.id).topics
    assert final in {frozenset(c) for c in choices}
    changes = [
        json.loads(detail)
        for detail in session.scalars(
            select(SubscriberEvent.detail).where(
                SubscriberEvent.subscriber_id == subscriber.id, SubscriberEvent.kind == "topics_changed"
            )
        )
    ]
    followed = {"nova"}
    for change in changes:  # replaying the log gives the final state: each change saw the one before
        assert set(change["removed"]) <= followed
        followed = (followed - set(change["removed"])) | set(change["added"])
    assert frozenset(followed) == final
    logged = sorted((sorted(c["added"]), sorted(c["removed"])) for c in changes)
    assert logged == sorted((sorted(c.added), sorted(c.removed)) for c in reported)
