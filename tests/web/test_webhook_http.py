"""The SES webhook through HTTP, against the app under a real uvicorn process.

Real AWS-signed messages (../shared/fixtures/sns; their certificates injected through
NEWSLETTER_SNS_CERT_DIR, age and expiry checks off for them) are accepted; one changed byte in a signed
field is a 403 that stores nothing; the AWS documentation's unsigned examples are refused. Messages signed
here (mailer.testing.sns_signer) carry the URL attacks: every one is refused, and the connection trap every
outbound request of the server goes to (https_proxy) sees no connection, while a genuine
SubscriptionConfirmation does reach it.
"""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import func, select
from support.paths import SHARED_FIXTURES
from support.sns import split_http

from mailer.feedback.models import FeedbackMessage
from mailer.feedback.samples import bounce_notification, complaint_notification
from subscribers.db import utcnow
from subscribers.models import Subscriber, Suppression
from subscribers.preferences import add_subscriber

SNS = SHARED_FIXTURES / "sns"
SIGNED = sorted(SNS.glob("*.json"))
UNSIGNED = sorted((SNS / "http-examples-unsigned").glob("*-json-format.http"))


def _stored(web) -> int:
    with web.env.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(FeedbackMessage)) or 0)


def _suppressed(web, email: str) -> Suppression | None:
    with web.env.sessions() as session:
        return session.scalar(select(Suppression).where(Suppression.email_key == email.lower()))


def _status(web, email: str) -> str | None:
    with web.env.sessions() as session:
        return session.scalar(select(Subscriber.status).where(Subscriber.email_key == email.lower()))


def test_real_signed_messages_are_accepted_and_applied_once(live_web):
    web = live_web
    results = {}
    for path in SIGNED:
        body = path.read_text()
        kind = json.loads(body)["Type"]
        before = web.trap.connections
        response = web.post_sns(body, kind)
        results[path.name] = (response.status_code, response.json(), web.trap.connections - before)
    bounce = results["notification-ses-bounce-no-subject-sigv1.json"]
    complaint = results["notification-ses-event-complaint-sigv1.json"]
    hello = results["notification-sigv2-sha256.json"]
    confirmation = results["subscriptionconfirmation-sigv1.json"]
    assert bounce[0] == 200 and bounce[1]["status"] == "applied", bounce
    assert complaint[0] == 200 and complaint[1]["status"] == "applied", complaint
    assert hello[0] == 200 and hello[1]["status"] == "ignored"  # authentic, but no SES notification
    # verified, so the server visited its SubscribeURL: through the trap (no network here), which failed
    assert confirmation[0] == 502 and confirmation[2] == 1, confirmation
    # nobody subscribes at these addresses: the suppressions still hold, with their evidence
    assert _suppressed(web, "bounce@simulator.amazonses.com").reason == "hard_bounce"
    assert _suppressed(web, "complaint@simulator.amazonses.com").reason == "complaint"
    stored = _stored(web)
    for path in SIGNED[:3]:  # SNS delivers at least once: the same messages again change nothing
        response = web.post_sns(path.read_text(), "Notification")
        assert response.status_code == 200 and response.json()["status"] in ("duplicate", "ignored")
    assert _stored(web) == stored


@pytest.mark.parametrize("field", ["Message", "Subject", "Timestamp", "TopicArn"])
def test_one_changed_byte_of_a_signed_field_is_refused_and_stores_nothing(live_web, field):
    web = live_web
    body = json.loads((SNS / "notification-ses-event-complaint-sigv1.json").read_text())
    value = body[field]
    index = next(i for i, ch in enumerate(value) if ch.isdigit() or ch.isalpha())
    flipped = "1" if value[index] != "1" else "2"
    body[field] = value[:index] + flipped + value[index + 1 :]
    body["MessageId"] = f"tampered-{field}"  # not a duplicate of the genuine one: it must fail on its own
    before, trapped = _stored(web), web.trap.connections
    response = web.post_sns(json.dumps(body), "Notification")
    assert response.status_code == 403, response.text
    assert response.json() == {"error": "unverified", "detail": "the message could not be verified"}
    assert _stored(web) == before and web.trap.connections == trapped
    assert "refused a message" in web.log_text()


@pytest.mark.parametrize("path", UNSIGNED, ids=lambda p: p.name)
def test_the_documentation_examples_are_refused(live_web, path):
    headers, body = split_http(path)
    before = _stored(live_web)
    response = live_web.post_sns(body, headers["x-amz-sns-message-type"])
    assert response.status_code == 403
    assert _stored(live_web) == before


def test_header_and_body_type_must_agree_and_the_header_is_required(live_web):
    body = (SNS / "notification-ses-bounce-no-subject-sigv1.json").read_text()
    assert live_web.post_sns(body, "SubscriptionConfirmation").status_code == 400
    assert live_web.post_sns(body, None).status_code == 400


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'{"Type": "Notification"}', b"\xff\xfe", b'{"Type": 5, "TopicArn": []}'],
)
def test_malformed_bodies_are_400_and_store_nothing(live_web, body):
    before = _stored(live_web)
    response = live_web.post_sns(body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_input"
    assert _stored(live_web) == before


def test_a_body_over_the_limit_is_413(live_web):
    response = live_web.post_sns(b"x" * (live_web.settings.max_body_bytes + 1))
    assert response.status_code == 413


CERT_URL_ATTACKS = [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-local.pem",  # not https
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-local.pem",
    "https://sns.s3.amazonaws.com/SimpleNotificationService-local.pem",  # an S3 bucket host
    "https://sns.s3-us-west-2.amazonaws.com/SimpleNotificationService-local.pem",
    "https://sns.us-moon-1.amazonaws.com/SimpleNotificationService-local.pem",  # a made-up region
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-local.txt",  # not a .pem
    "https://user:pw@sns.us-east-1.amazonaws.com/SimpleNotificationService-local.pem",  # userinfo
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-local.pem",  # an odd port
    "https://sns.us-east-1.amazonaws.com:abc/SimpleNotificationService-local.pem",
    "https://[sns.us-east-1.amazonaws.com/SimpleNotificationService-local.pem",
    "https://127.0.0.1/SimpleNotificationService-local.pem",
]


@pytest.mark.parametrize("url", CERT_URL_ATTACKS)
def test_signing_cert_url_attacks_are_refused_without_a_connection(live_web, url):
    web = live_web
    body = web.signer.envelope(
        bounce_notification("cert-attack@example.org", message_id="m", at=_now()), signing_cert_url=url
    )
    before, trapped = _stored(web), web.trap.connections
    response = web.post_sns(body)
    assert response.status_code == 403, response.text
    assert _stored(web) == before and web.trap.connections == trapped
    assert _suppressed(web, "cert-attack@example.org") is None


SUBSCRIBE_URL_ATTACKS = [
    "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
    "https://sns.us-east-1.amazonaws.com.evil.example/?Action=ConfirmSubscription",
    "https://sns.s3.amazonaws.com/?Action=ConfirmSubscription",
    "https://user@sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
    "https://sns.us-east-1.amazonaws.com:99999/?Action=ConfirmSubscription",
    "https://evil.example/?Action=ConfirmSubscription",
]


@pytest.mark.parametrize("url", SUBSCRIBE_URL_ATTACKS)
def test_subscribe_url_attacks_are_refused_without_a_connection(live_web, url):
    web = live_web
    body = web.signer.envelope("confirm me", kind="SubscriptionConfirmation", subscribe_url=url)
    before, trapped = _stored(web), web.trap.connections
    response = web.post_sns(body, "SubscriptionConfirmation")
    assert response.status_code == 403, response.text
    assert _stored(web) == before and web.trap.connections == trapped


def test_a_genuine_confirmation_signed_here_is_visited_through_the_trap(live_web):
    web = live_web
    trapped = web.trap.connections
    body = web.signer.envelope("confirm me", kind="SubscriptionConfirmation", version="2")
    response = web.post_sns(body, "SubscriptionConfirmation")
    assert response.status_code == 502  # the trap closes the connection: SNS will send it again
    assert web.trap.connections == trapped + 1


def test_a_certificate_not_issued_to_sns_is_refused(live_web, tmp_path):
    from mailer.testing.sns_signer import SnsSigner

    impostor = SnsSigner(
        common_name="attacker.amazonaws.com", cert_name="SimpleNotificationService-impostor.pem"
    )
    impostor.write_certificate(live_web.settings.sns_cert_dir)
    body = impostor.envelope(bounce_notification("impostor@example.org", message_id="m", at=_now()))
    assert live_web.post_sns(body).status_code == 403
    assert _suppressed(live_web, "impostor@example.org") is None


def test_a_topic_not_in_the_allow_list_is_refused(live_web):
    body = live_web.signer.envelope(
        bounce_notification("other-topic@example.org", message_id="m", at=_now()),
        topic_arn="arn:aws:sns:us-east-1:999999999999:someone-elses",
    )
    assert live_web.post_sns(body).status_code == 403
    assert _suppressed(live_web, "other-topic@example.org") is None


def test_signed_bounce_and_complaint_update_subscribers_once(live_web):
    web = live_web
    with web.env.transaction() as session:
        add_subscriber(session, "hard@example.org", source="test", now=utcnow())
        add_subscriber(session, "angry@example.org", source="test", now=utcnow())
    bounce = web.signer.envelope(bounce_notification("hard@example.org", message_id="ses-1", at=_now()))
    complaint = web.signer.envelope(
        complaint_notification("angry@example.org", message_id="ses-2", at=_now())
    )
    for body in (bounce, complaint):
        response = web.post_sns(body)
        assert response.status_code == 200 and response.json()["status"] == "applied"
        assert response.json()["changes"] >= 1
    assert _status(web, "hard@example.org") == "bounced"
    assert _status(web, "angry@example.org") == "complained"
    assert _suppressed(web, "hard@example.org").evidence  # the SES feedback id: what said so
    for body in (bounce, complaint):
        response = web.post_sns(body)
        assert response.json() == {**response.json(), "status": "duplicate", "changes": 0}


def _now():
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def test_many_notifications_at_once_are_each_stored_and_applied_once(live_web):
    """Concurrent deliveries share commits (the writer's groups); every one is applied, each once."""
    from concurrent.futures import ThreadPoolExecutor

    web = live_web
    with web.env.transaction() as session:
        for i in range(60):
            add_subscriber(session, f"burst{i}@example.org", source="test", now=utcnow())
    bodies = [
        web.signer.envelope(bounce_notification(f"burst{i}@example.org", message_id=f"b{i}", at=_now()))
        for i in range(60)
    ]
    before = _stored(web)

    def post(body: str) -> int:
        with httpx.Client(base_url=web.url, timeout=30) as client:
            headers = {"x-amz-sns-message-type": "Notification"}
            return client.post(web.settings.webhook_path, content=body, headers=headers).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(post, bodies + bodies[:20]))  # the first 20 delivered twice
    assert codes == [200] * 80
    assert _stored(web) == before + 60
    assert all(_status(web, f"burst{i}@example.org") == "bounced" for i in range(60))


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_timestamp_out_of_range_is_a_400_not_a_500(live_web, timestamp):
    body = json.loads(live_web.signer.envelope("x"))
    body["Timestamp"] = timestamp
    assert live_web.post_sns(json.dumps(body)).status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com/\u00e9.pem",
        "https://sns.us-east-1.amazonaws.com/a b.pem",
        "https://sns.us-east-1.amazonaws.com/\ud800.pem",
        "https://sns.us-east-1.amazonaws.com/a\\b.pem",
    ],
)
def test_certificate_urls_no_sns_has_are_refused_not_crashed_on(live_web, url):
    body = live_web.signer.envelope("x", signing_cert_url=url)
    response = live_web.post_sns(body.encode("utf-8", "surrogatepass"))
    assert response.status_code in (400, 403), response.text


def test_a_key_given_twice_is_refused(live_web):
    """Which of two values counts must not differ between a quick look and the parser."""
    body = live_web.signer.envelope(bounce_notification("twice@example.org", message_id="m", at=_now()))
    doubled = body[:-1] + ', "SigningCertURL": "https://sns.us-east-1.amazonaws.com/Other.pem"}'
    response = live_web.post_sns(doubled)
    assert response.status_code == 400 and "appears twice" in response.json()["detail"]


def test_characters_no_database_stores_fail_nothing_and_never_give_a_5xx(live_web):
    """Verified notifications holding what no database text column takes (here a lone surrogate in the
    address, as SES would escape it) arrive among good ones, five copies of one bounce under five
    MessageIds: every one is answered 200, the good ones are applied, the odd bounce once (its address,
    not one we could send to, suppresses nobody), and nothing gets a 5xx. (They were 400s: refused by
    PostgreSQL, they failed their whole group first.)"""
    from concurrent.futures import ThreadPoolExecutor

    web = live_web
    with web.env.transaction() as session:
        for i in range(30):
            add_subscriber(session, f"mix{i}@example.org", source="test", now=utcnow())
    good = [
        web.signer.envelope(bounce_notification(f"mix{i}@example.org", message_id=f"g{i}", at=_now()))
        for i in range(30)
    ]
    bad_note = bounce_notification("x@example.org", message_id="bad", at=_now())
    bad_note["bounce"]["bouncedRecipients"][0]["emailAddress"] = "\ud800@example.org"
    bad = [web.signer.envelope(json.dumps(bad_note)) for _ in range(5)]

    def post(body: str) -> int:
        with httpx.Client(base_url=web.url, timeout=30) as client:
            headers = {"x-amz-sns-message-type": "Notification"}
            content = body.encode("utf-8", "surrogatepass")
            return client.post(web.settings.webhook_path, content=content, headers=headers).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(post, good + bad))
    assert codes == [200] * 35
    assert all(_status(web, f"mix{i}@example.org") == "bounced" for i in range(30))
    with web.env.transaction() as session:
        stored = session.scalars(
            select(FeedbackMessage.feedback_id).where(FeedbackMessage.body.contains("ud800"))
        )
        assert len(list(stored)) == 1  # one of the five copies; the rest were duplicates
