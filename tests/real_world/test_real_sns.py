"""Replays of the AWS-signed SNS messages in ../shared/fixtures/sns (see its README for sources and
licences): four messages signed by AWS with the certificates their SigningCertURL names, and the AWS
developer guide's unsigned HTTP examples.

Every property checked here is also checked with messages and certificates made by the project
(tests/feedback/test_feedback_sns.py, test_feedback_apply.py, tests/web/test_webhook_http.py,
tests/cli/test_feedback_cli.py); these add AWS's own signatures as cases. The fixture certificates
expired years ago, so verifying those messages switches the expiry and age checks off, or verifies "as
of" the message's own time.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugins.web import LiveWeb, start_web
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from support.paths import PROJECT_ROOT, SHARED_FIXTURES
from support.sns import split_http

from mailer.errors import InputError
from mailer.feedback.apply import receive_stepwise
from mailer.feedback.models import FeedbackMessage
from mailer.feedback.results import FeedbackResult
from mailer.feedback.sns import (
    SnsSignatureError,
    SnsVerifier,
    canonical_string,
    parse_sns_message,
)
from mailer.feedback.sns_hosts import CachedCertificates, CertificateDirectory
from subscribers.db import make_session_factory, open_database
from subscribers.models import Subscriber, Suppression
from subscribers.preferences import add_subscriber

SNS_DIR = SHARED_FIXTURES / "sns"
CERTS = SNS_DIR / "certs"
SIGNED = sorted(SNS_DIR.glob("*.json"))
UNSIGNED = sorted((SNS_DIR / "http-examples-unsigned").glob("*-json-format.http"))
BOUNCE = SNS_DIR / "notification-ses-bounce-no-subject-sigv1.json"
COMPLAINT = SNS_DIR / "notification-ses-event-complaint-sigv1.json"
HELLO = SNS_DIR / "notification-sigv2-sha256.json"
CONFIRMATION = SNS_DIR / "subscriptionconfirmation-sigv1.json"
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)

# the topics of the real signed messages: the allow-list accepts nothing else
FIXTURE_TOPICS = (
    "arn:aws:sns:us-east-1:364852123998:test-email",
    "arn:aws:sns:us-east-2:295079676684:publish-and-verify-62674b1d-4295-426b-88e7-5fb75652a04e",
    "arn:aws:sns:us-east-1:246796806071:snsNetTest",
)


def fixture_certs() -> CachedCertificates:
    return CachedCertificates(CertificateDirectory(CERTS))


def lenient(certs: CachedCertificates | None = None) -> SnsVerifier:
    """Signature, names and topic: the fixture certificates and messages are years old."""
    return SnsVerifier(
        certs or fixture_certs(), max_age=None, check_validity=False, topic_arns=FIXTURE_TOPICS
    )


def test_fixture_set_is_complete() -> None:
    assert [p.name for p in SIGNED] == [BOUNCE.name, COMPLAINT.name, HELLO.name, CONFIRMATION.name]
    assert len(UNSIGNED) == 3
    assert len(list(CERTS.glob("*.pem"))) == 2


@pytest.mark.parametrize("path", SIGNED, ids=lambda p: p.name)
def test_real_signed_messages_verify_with_their_certificate(path: Path) -> None:
    lenient().verify(parse_sns_message(path.read_bytes()), now=NOW)


@pytest.mark.parametrize("path", SIGNED, ids=lambda p: p.name)
def test_real_messages_pass_every_check_as_of_their_own_time(path: Path) -> None:
    message = parse_sns_message(path.read_text())
    SnsVerifier(fixture_certs(), topic_arns=FIXTURE_TOPICS).verify(
        message, now=message.timestamp + dt.timedelta(seconds=2)
    )


@pytest.mark.parametrize("path", SIGNED, ids=lambda p: p.name)
def test_real_messages_fail_today_for_age_and_for_expired_certificate(path: Path) -> None:
    message = parse_sns_message(path.read_text())
    with pytest.raises(SnsSignatureError, match="older than"):
        SnsVerifier(fixture_certs(), topic_arns=FIXTURE_TOPICS).verify(message, now=NOW)
    with pytest.raises(SnsSignatureError, match="not valid at"):
        SnsVerifier(fixture_certs(), max_age=None, topic_arns=FIXTURE_TOPICS).verify(message, now=NOW)


def test_parsed_fields_of_the_real_bounce_notification() -> None:
    message = parse_sns_message(BOUNCE.read_text())
    assert message.type == "Notification"
    assert message.message_id == "71a6b82e-0f1a-58db-b902-e2ef60f87541"
    assert message.subject is None
    assert message.timestamp == dt.datetime(2022, 4, 1, 21, 24, 50, 200000, tzinfo=dt.UTC)
    assert json.loads(message.message)["notificationType"] == "Bounce"
    assert canonical_string(message).startswith(b"Message\n{")
    assert b"\nSubject\n" not in canonical_string(message)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Message", "Hello world!"),
        ("MessageId", "17dea24b-55c2-540b-8362-f916557af766"),
        ("Timestamp", "2022-07-28T21:24:09.324Z"),
        ("Subject", "injected"),
        ("SignatureVersion", "1"),
        ("Signature", "QUJD"),
    ],
)
def test_any_tampered_field_of_a_real_message_fails(field: str, value: str) -> None:
    data = json.loads(HELLO.read_text())
    data[field] = value
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        lenient().verify(parse_sns_message(json.dumps(data)), now=NOW)


def test_tampered_signature_bytes_of_a_real_message_fail() -> None:
    data = json.loads(CONFIRMATION.read_text())
    sig = bytearray(base64.b64decode(data["Signature"]))
    sig[10] ^= 1
    data["Signature"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(SnsSignatureError):
        lenient().verify(parse_sns_message(data), now=NOW)


def test_a_real_signature_checked_against_the_other_real_certificate_fails() -> None:
    data = json.loads(CONFIRMATION.read_text())
    other = "SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
    data["SigningCertURL"] = f"https://sns.us-east-1.amazonaws.com/{other}"
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        lenient().verify(parse_sns_message(data), now=NOW)


@pytest.mark.parametrize("path", UNSIGNED, ids=lambda p: p.name)
def test_the_unsigned_documentation_examples_fail(path: Path) -> None:
    headers, body = split_http(path)
    # Even a source that hands out a genuine AWS certificate for any URL must not make them pass.
    genuine = CertificateDirectory(CERTS)("x/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem")
    certs = CachedCertificates(lambda _url: genuine)
    message = parse_sns_message(body, message_type_header=headers["x-amz-sns-message-type"])
    with pytest.raises(SnsSignatureError):
        SnsVerifier(certs, max_age=None, check_validity=False, topic_arns={message.topic_arn}).verify(
            message, now=NOW
        )


def test_real_certificates_are_fetched_once_per_url() -> None:
    calls: list[str] = []
    directory = CertificateDirectory(CERTS)

    def fetch(url: str) -> bytes:
        calls.append(url)
        return directory(url)

    verifier = lenient(CachedCertificates(fetch))
    for _ in range(3):
        for path in SIGNED:
            verifier.verify(parse_sns_message(path.read_text()), now=NOW)
    assert len(calls) == 3  # two us-east-1 certificates + the us-east-2 URL of the SHA256 message


def test_with_the_allow_list_empty_a_real_message_is_refused() -> None:
    message = parse_sns_message(BOUNCE.read_text())
    lenient().verify(message, now=NOW)
    empty = SnsVerifier(fixture_certs(), max_age=None, check_validity=False, topic_arns=())
    with pytest.raises(SnsSignatureError, match="NEWSLETTER_SNS_TOPIC_ARNS lists no topic"):
        empty.verify(message, now=NOW)


def test_a_real_message_with_attributes_and_lambda_names_verifies() -> None:
    data = json.loads(HELLO.read_text())
    data["MessageAttributes"] = {"campaign": {"Type": "String", "Value": "12"}}  # an object, not signed
    lenient().verify(parse_sns_message(data), now=NOW)
    data["SigningCertUrl"] = data.pop("SigningCertURL")  # how AWS Lambda hands a message over
    data["UnsubscribeUrl"] = data.pop("UnsubscribeURL")
    message = parse_sns_message(json.dumps(data))
    assert message.unsubscribe_url is not None
    lenient().verify(message, now=NOW)


# --- applied to a database, as tests/feedback/test_feedback_apply.py applies the project's own --------


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = open_database(database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        for email in ("bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com"):
            add_subscriber(session, email, now=NOW)
        session.commit()
    yield factory
    engine.dispose()


def feed(sessions: sessionmaker[Session], body: str | bytes | dict[str, Any]) -> FeedbackResult:
    return receive_stepwise(body, sessions=sessions, verifier=lenient(), now=NOW, soft_bounce_limit=3)


def stored(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(FeedbackMessage)) or 0


def status_and_suppression(sessions: sessionmaker[Session], email: str) -> tuple[str | None, str | None]:
    with sessions() as session:
        status = session.scalar(select(Subscriber.status).where(Subscriber.email_key == email))
        reason = session.scalar(select(Suppression.reason).where(Suppression.email_key == email))
    return status, reason


def test_the_real_bounce_and_complaint_are_applied_once(sessions: sessionmaker[Session]) -> None:
    result = feed(sessions, BOUNCE.read_bytes())
    assert result.verified and not result.duplicate
    assert any("suppressed (hard_bounce)" in line for line in result.lines())
    assert status_and_suppression(sessions, "bounce@simulator.amazonses.com") == ("bounced", "hard_bounce")
    with sessions() as session:
        row = session.scalar(select(FeedbackMessage))
        assert row is not None and row.message_id == "71a6b82e-0f1a-58db-b902-e2ef60f87541"
        assert json.loads(row.body)["Signature"].startswith("K27nwTcT") and row.verified
    feed(sessions, COMPLAINT.read_text())
    assert status_and_suppression(sessions, "complaint@simulator.amazonses.com") == (
        "complained",
        "complaint",
    )
    before = stored(sessions)
    assert feed(sessions, BOUNCE.read_text()).duplicate and feed(sessions, COMPLAINT.read_text()).duplicate
    assert stored(sessions) == before


def test_a_changed_real_message_and_the_documentation_example_store_nothing(
    sessions: sessionmaker[Session],
) -> None:
    data = json.loads(BOUNCE.read_text())
    data["Message"] = data["Message"].replace("Permanent", "Transient")
    with pytest.raises(SnsSignatureError):
        feed(sessions, data)
    unsigned = (SNS_DIR / "http-examples-unsigned" / "http-https-notification-json-format.http").read_text()
    with pytest.raises(SnsSignatureError):
        feed(sessions, unsigned.partition("\n\n")[2])
    assert stored(sessions) == 0
    assert status_and_suppression(sessions, "bounce@simulator.amazonses.com") == ("active", None)


def test_the_real_hello_world_is_stored_then_refused_and_the_confirmation_stored(
    sessions: sessionmaker[Session],
) -> None:
    for _ in range(2):  # refused again, never "already applied"
        with pytest.raises(InputError, match="not JSON"):
            feed(sessions, HELLO.read_text())
    result = feed(sessions, CONFIRMATION.read_text())
    assert result.kind == "SubscriptionConfirmation" and result.subscribe_url is not None
    assert result.subscribe_url.startswith("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription")
    assert stored(sessions) == 2
    assert feed(sessions, CONFIRMATION.read_text()).duplicate


# --- replayed by the command line, as tests/cli/test_feedback_cli.py replays the project's own ----------


def run_cli(db_url: str, *args: str, topics: str = FIXTURE_TOPICS[0]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_DATA_DIR": str(Path(db_url.removeprefix("sqlite:///")).parent),
        "NEWSLETTER_SNS_TOPIC_ARNS": topics,
    }
    return subprocess.run(
        [sys.executable, "-c", "from mailer.cli import main; main()", "feedback", "apply", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=60,
    )


@pytest.mark.slow
def test_the_real_bounce_replayed_by_the_cli_as_of_its_time(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = open_database(db_url)
    with make_session_factory(engine)() as session:
        add_subscriber(session, "bounce@simulator.amazonses.com", now=NOW)
        session.commit()
    engine.dispose()
    today = run_cli(db_url, str(BOUNCE), "--cert-dir", str(CERTS))
    assert today.returncode == 2 and "older than" in today.stderr and "Traceback" not in today.stderr
    args = [str(BOUNCE), "--cert-dir", str(CERTS), "--as-of", "2022-04-01T21:25:00Z"]
    unlisted = run_cli(db_url, *args, topics="")
    assert unlisted.returncode == 2 and "NEWSLETTER_SNS_TOPIC_ARNS" in unlisted.stderr
    first = run_cli(db_url, *args)
    assert first.returncode == 0, first.stderr
    assert "(verified)" in first.stdout and "suppressed (hard_bounce), status bounced" in first.stdout
    second = run_cli(db_url, *args)
    assert second.returncode == 0 and "duplicate" in second.stdout


# --- posted to the live webhook, as tests/web/test_webhook_http.py posts the project's own -------------


@pytest.fixture(scope="module")
def real_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWeb]:
    """A server that trusts the fixture certificates and topics, with the age and date checks off: the
    messages and certificates are years old."""
    web = start_web(
        tmp_path_factory.mktemp("real-web"),
        certificates=sorted(CERTS.glob("*.pem")),
        topics=FIXTURE_TOPICS,
        NEWSLETTER_SNS_MAX_AGE_SECONDS="0",
        NEWSLETTER_SNS_CHECK_CERTIFICATE_DATES="false",
    )
    try:
        yield web
    finally:
        web.stop()
        web.trap.close()


def _web_stored(web: LiveWeb) -> int:
    with web.env.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(FeedbackMessage)) or 0)


def _web_reason(web: LiveWeb, email: str) -> str | None:
    with web.env.sessions() as session:
        return session.scalar(select(Suppression.reason).where(Suppression.email_key == email))


def test_real_signed_messages_are_accepted_by_the_webhook_and_applied_once(real_web: LiveWeb) -> None:
    web = real_web
    results = {}
    for path in SIGNED:
        body = path.read_text()
        before = web.trap.connections
        response = web.post_sns(body, json.loads(body)["Type"])
        results[path] = (response.status_code, response.json(), web.trap.connections - before)
    assert results[BOUNCE][0] == 200 and results[BOUNCE][1]["status"] == "applied", results[BOUNCE]
    assert results[COMPLAINT][0] == 200 and results[COMPLAINT][1]["status"] == "applied", results[COMPLAINT]
    assert results[HELLO][0] == 200 and results[HELLO][1]["status"] == "ignored"
    # verified, so the server visited its SubscribeURL: through the trap (no network here), which failed
    assert results[CONFIRMATION][0] == 502 and results[CONFIRMATION][2] == 1, results[CONFIRMATION]
    assert _web_reason(web, "bounce@simulator.amazonses.com") == "hard_bounce"
    assert _web_reason(web, "complaint@simulator.amazonses.com") == "complaint"
    stored = _web_stored(web)
    for path in (BOUNCE, COMPLAINT, HELLO):  # SNS delivers at least once
        response = web.post_sns(path.read_text(), "Notification")
        expected = "ignored" if path == HELLO else "duplicate"  # never applied: never a duplicate
        assert response.status_code == 200 and response.json()["status"] == expected
    assert _web_stored(web) == stored


@pytest.mark.parametrize("field", ["Message", "Subject", "Timestamp", "TopicArn"])
def test_one_changed_byte_of_a_real_message_is_refused_by_the_webhook(real_web: LiveWeb, field: str) -> None:
    body = json.loads(COMPLAINT.read_text())
    value = body[field]
    index = next(i for i, ch in enumerate(value) if ch.isdigit() or ch.isalpha())
    body[field] = value[:index] + ("1" if value[index] != "1" else "2") + value[index + 1 :]
    body["MessageId"] = f"tampered-{field}"  # not a duplicate of the genuine one: it must fail on its own
    before, trapped = _web_stored(real_web), real_web.trap.connections
    response = real_web.post_sns(json.dumps(body), "Notification")
    assert response.status_code == 403, response.text
    assert _web_stored(real_web) == before and real_web.trap.connections == trapped


@pytest.mark.parametrize("path", UNSIGNED, ids=lambda p: p.name)
def test_the_documentation_examples_are_refused_by_the_webhook(real_web: LiveWeb, path: Path) -> None:
    headers, body = split_http(path)
    before = _web_stored(real_web)
    assert real_web.post_sns(body, headers["x-amz-sns-message-type"]).status_code == 403
    assert _web_stored(real_web) == before


def test_the_webhook_wants_the_real_messages_type_in_the_header(real_web: LiveWeb) -> None:
    body = BOUNCE.read_text()
    assert real_web.post_sns(body, "SubscriptionConfirmation").status_code == 400
    assert real_web.post_sns(body, None).status_code == 400
