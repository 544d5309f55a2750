"""The webhook's group commit: notifications stored and applied together (receive_batch_stepwise) leave
the lists exactly as the same notifications applied one by one (receive_stepwise) do, on both databases;
duplicates inside a group and across groups change nothing; a message that holds no SES notification
is stored and answered on its own, without failing its group."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from plugins.db import create_pg_database, drop_pg_database
from sqlalchemy import select

from mailer.feedback.apply import receive_batch_stepwise, receive_stepwise, verified_message
from mailer.feedback.models import FeedbackMessage
from mailer.feedback.results import FeedbackResult, UnusablePayload
from mailer.feedback.samples import bounce_notification, complaint_notification
from mailer.feedback.sns import SnsVerifier
from mailer.feedback.sns_hosts import CachedCertificates
from mailer.testing.sns_signer import DEFAULT_TOPIC, SnsSigner
from subscribers.db import make_session_factory, open_database, utcnow
from subscribers.models import Subscriber, SubscriberEvent, Suppression
from subscribers.preferences import add_subscriber

NOW = dt.datetime.now(dt.UTC)  # every message of this module is sent and verified at this moment
SIGNER = SnsSigner()
VERIFIER = SnsVerifier(CachedCertificates(lambda _url: SIGNER.certificate_pem), topic_arns={DEFAULT_TOPIC})


def _bodies() -> list[str]:
    def sign(notification: object, message_id: str) -> str:
        return SIGNER.envelope(notification, message_id=message_id, timestamp=NOW)  # type: ignore[arg-type]

    hard = sign(bounce_notification("hard@example.org", message_id="s1", at=NOW), "m-hard")
    return [
        hard,
        sign(complaint_notification("angry@example.org", message_id="s2", at=NOW), "m-angry"),
        sign(
            bounce_notification("soft@example.org", message_id="s3", at=NOW, bounce_type="Transient"),
            "m-soft",
        ),
        sign(bounce_notification("nobody@example.org", message_id="s4", at=NOW), "m-nobody"),
        sign("not an SES notification", "m-hello"),
        hard,  # the same delivery twice in one group
        sign(bounce_notification("INVALID", message_id="s5", at=NOW), "m-invalid"),
        sign(bounce_notification("Angry@Example.org", message_id="s6", at=NOW), "m-angry-again"),
    ]


def _database(url: str):  # type: ignore[no-untyped-def]
    factory = make_session_factory(open_database(url, migrate=True))
    with factory() as session:
        for address in ("hard@example.org", "angry@example.org", "soft@example.org"):
            add_subscriber(session, address, topics=[], source="test", now=utcnow())
        session.commit()
    return factory


def _state(factory) -> tuple:  # type: ignore[no-untyped-def]
    with factory() as session:
        statuses = sorted(
            session.execute(select(Subscriber.email_key, Subscriber.status, Subscriber.soft_bounces))
        )
        suppressed = sorted(session.execute(select(Suppression.email_key, Suppression.reason)))
        events = sorted(session.execute(select(SubscriberEvent.email_key, SubscriberEvent.kind)))
        stored = sorted(session.scalars(select(FeedbackMessage.message_id)))
    return statuses, suppressed, events, stored


@pytest.fixture
def second_database(database_url: str, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Another empty database of the same kind, for the grouped run."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    name = f"nlbatch_{uuid.uuid4().hex[:8]}"
    url = create_pg_database(name)
    yield url
    drop_pg_database(name)


def test_a_group_leaves_the_lists_as_one_by_one_does(database_url, second_database):
    bodies = _bodies()
    one_by_one = _database(database_url)
    answers_single = []
    for body in bodies:
        try:
            result = receive_stepwise(
                body, sessions=one_by_one, verifier=VERIFIER, now=NOW, soft_bounce_limit=3
            )
            answers_single.append("duplicate" if result.duplicate else "applied")
        except UnusablePayload:
            answers_single.append("unusable")
    expected = _state(one_by_one)

    grouped = _database(second_database)
    messages = [verified_message(b, VERIFIER, now=NOW, message_type_header="Notification") for b in bodies]
    answers = receive_batch_stepwise(messages, sessions=grouped, now=NOW, soft_bounce_limit=3)
    kinds = [
        "unusable" if isinstance(a, UnusablePayload) else ("duplicate" if a.duplicate else "applied")
        for a in answers
    ]
    assert kinds == answers_single
    assert kinds == [
        "applied",
        "applied",
        "applied",
        "applied",
        "unusable",
        "duplicate",
        "applied",
        "applied",
    ]
    assert _state(grouped) == expected
    statuses, suppressed, _, stored = expected
    assert ("hard@example.org", "bounced", 0) in statuses and ("soft@example.org", "active", 1) in statuses
    assert ("angry@example.org", "complained", 0) in statuses
    assert ("nobody@example.org", "hard_bounce") in suppressed and len(stored) == 7

    again = receive_batch_stepwise(messages, sessions=grouped, now=NOW, soft_bounce_limit=3)
    # the one that holds no SES notification is refused again, not called applied
    assert [isinstance(a, UnusablePayload) or a.duplicate for a in again] == [True] * len(messages)
    assert [isinstance(a, UnusablePayload) for a in again] == [k == "unusable" for k in kinds]
    assert _state(grouped) == expected


def test_the_writer_answers_a_group_on_its_loop_and_not_a_request_that_gave_up(database_url, tmp_path):
    """FeedbackWriter.submit (the webhook's path): the futures of one group are settled on their event
    loop; a request that stopped waiting (its future cancelled, as wait_for does on a timeout) gets no
    answer and breaks nothing, and its notification is still stored and applied."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from mailer.services.env import AppEnv
    from mailer.services.feedback_writer import FeedbackWriter
    from mailer.settings import Settings

    _database(database_url)  # the subscribers
    env = AppEnv.from_settings(Settings(data_dir=tmp_path, database_url=database_url))
    writer = FeedbackWriter(env)
    messages = [verified_message(b, VERIFIER, now=NOW, message_type_header="Notification") for b in _bodies()]

    errors: list[dict[str, object]] = []

    async def main() -> list[FeedbackResult | BaseException]:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
        futures = [writer.submit(message) for message in messages[:4]]
        futures[1].cancel()  # gave up before the writer answered
        # one wake-up settles them all; an answer given to the abandoned one would stop the others'
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 30)

    try:  # on a thread of its own: a loop another test left running in this one refuses asyncio.run
        with ThreadPoolExecutor(1) as pool:
            answers = pool.submit(asyncio.run, main()).result()
    finally:
        writer.close()
        env.close()
    assert isinstance(answers[1], asyncio.CancelledError) and errors == []
    assert [a.duplicate for a in answers if not isinstance(a, BaseException)] == [False, False, False]
    with env.sessions() as session:
        stored = set(session.scalars(select(FeedbackMessage.message_id)))
        suppressed = set(session.scalars(select(Suppression.email_key)))
    assert {"m-hard", "m-angry", "m-soft", "m-nobody"} <= stored  # the abandoned one too
    assert {"hard@example.org", "angry@example.org", "nobody@example.org"} <= suppressed


def test_one_bounce_published_twice_under_two_message_ids_is_applied_once(database_url):
    """SES may publish one bounce to two topics (identity notifications and a configuration set's event
    destination): two SNS messages, one feedback id. Whether they share a group, come in two groups or
    one at a time, the second is a duplicate that changes nothing (it failed its whole group before)."""
    bounce = bounce_notification("hard@example.org", message_id="s1", at=NOW)

    def body(message_id: str) -> str:
        return SIGNER.envelope(bounce, message_id=message_id, timestamp=NOW)  # type: ignore[arg-type]

    def message(message_id: str):  # type: ignore[no-untyped-def]
        return verified_message(body(message_id), VERIFIER, now=NOW, message_type_header="Notification")

    factory = _database(database_url)
    first = receive_batch_stepwise(
        [message("topic-a-1"), message("topic-b-1")], sessions=factory, now=NOW, soft_bounce_limit=3
    )
    assert [getattr(a, "duplicate", a) for a in first] == [False, True]
    after_first = _state(factory)
    again = receive_batch_stepwise([message("topic-c-1")], sessions=factory, now=NOW, soft_bounce_limit=3)
    single = receive_stepwise(
        body("topic-d-1"), sessions=factory, verifier=VERIFIER, now=NOW, soft_bounce_limit=3
    )
    assert [getattr(a, "duplicate", a) for a in again] == [True] and single.duplicate
    assert _state(factory) == after_first
    _, suppressed, events, stored = after_first
    assert stored == ["topic-a-1"] and ("hard@example.org", "hard_bounce") in suppressed
    assert sum(1 for key, kind in events if key == "hard@example.org" and kind == "suppressed") == 1


def test_a_bounce_whose_diagnostic_holds_nul_or_a_lone_surrogate_is_applied(database_url):
    """The remote server writes a bounce's diagnostic; PostgreSQL stores neither NUL nor a lone
    surrogate. The bounce is applied all the same (its events carry U+FFFD), and the raw message is
    stored as received (it was a 400, and the address was never suppressed)."""
    factory = _database(database_url)
    bounce = bounce_notification("hard@example.org", message_id="s-nul", at=NOW)
    bounce["bounce"]["bouncedRecipients"][0]["diagnosticCode"] = "smtp; 550 no\x00such \ud800user"
    bounce["bounce"]["feedbackId"] += "\x00"
    as_sent = json.dumps(bounce)  # SES escapes them: \u0000, \ud800
    body = SIGNER.envelope(as_sent, message_id="m-nul", timestamp=NOW)
    message = verified_message(body, VERIFIER, now=NOW, message_type_header="Notification")
    [answer] = receive_batch_stepwise([message], sessions=factory, now=NOW, soft_bounce_limit=3)
    assert not isinstance(answer, UnusablePayload) and not answer.duplicate
    with factory() as session:
        evidence = session.scalar(
            select(Suppression.evidence).where(Suppression.email_key == "hard@example.org")
        )
        raw = session.scalar(select(FeedbackMessage.body).where(FeedbackMessage.message_id == "m-nul"))
    assert evidence is not None and "\x00" not in evidence
    assert raw == body  # exactly as received


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)  # SQLite: one writer at a time
def test_a_deadlock_with_another_writer_is_tried_again_not_answered_503(database_url):
    """Two processes applying feedback for the same addresses can deadlock; PostgreSQL ends one of the
    transactions, and the writer does its group again instead of failing it (a 503 to SNS). Here another
    connection holds one subscriber's row and then asks for the row the group holds: the group, which
    waited first, is the one PostgreSQL ends."""
    import threading

    import psycopg

    factory = _database(database_url)
    complaints = [
        SIGNER.envelope(
            complaint_notification(address, message_id=f"d-{i}", at=NOW),  # type: ignore[arg-type]
            message_id=f"md-{i}",
            timestamp=NOW,  # the module's one clock: verified "now" below (the wall clock has moved on)
        )
        for i, address in enumerate(["angry@example.org", "hard@example.org"])
    ]
    messages = [
        verified_message(b, VERIFIER, now=NOW, message_type_header="Notification") for b in complaints
    ]
    other = psycopg.connect(database_url.replace("+psycopg", ""))
    other.execute("UPDATE subscribers SET locale = locale WHERE email_key = 'hard@example.org'")

    def close_the_circle() -> None:  # once the group holds angry@ and waits for hard@
        time.sleep(0.4)
        other.execute("UPDATE subscribers SET locale = locale WHERE email_key = 'angry@example.org'")
        other.commit()

    thread = threading.Thread(target=close_the_circle)
    thread.start()
    try:
        answers = receive_batch_stepwise(messages, sessions=factory, now=NOW, soft_bounce_limit=3)
    finally:
        thread.join(10)
        other.close()
    assert [getattr(a, "duplicate", a) for a in answers] == [False, False]
    statuses, suppressed, _, stored = _state(factory)
    assert {("angry@example.org", "complained", 0), ("hard@example.org", "complained", 0)} <= set(statuses)
    assert stored == ["md-0", "md-1"]
