"""The SES webhook through HTTP, against the app under a real uvicorn process with every SNS check on.

Messages signed here (mailer.testing.sns_signer) in both signature versions and every form (SES
notifications of both shapes, plain text, Lambda names with MessageAttributes, confirmations) are
accepted and applied once; one changed character in a signed field is a 403 that stores nothing; requests
laid out like the AWS documentation's unsigned examples, old messages and expired certificates are
refused. Signed messages also carry the URL attacks: every one is refused, and the connection trap every
outbound request of the server goes to (https_proxy) sees no connection, while a genuine
SubscriptionConfirmation does reach it. tests/real_world/test_real_sns.py posts the AWS-signed messages
of ../shared/fixtures to a server of its own when the folder exists.
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from plugins.web import LiveWeb
from sqlalchemy import func, select
from support import ses
from support.sns import DOCUMENTED_KINDS, Kind, documentation_example, split_http_text, tampered

from mailer.feedback.models import FeedbackMessage
from mailer.feedback.samples import bounce_notification, complaint_notification
from mailer.testing.sns_signer import DEFAULT_TOPIC, SnsSigner
from subscribers.db import utcnow
from subscribers.models import Subscriber, Suppression
from subscribers.preferences import add_subscriber

EVENT_SUBJECT = "Amazon SES Email Event Notification"


def _stored(web: LiveWeb) -> int:
    with web.env.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(FeedbackMessage)) or 0)


def _suppressed(web: LiveWeb, email: str) -> Suppression | None:
    with web.env.sessions() as session:
        return session.scalar(select(Suppression).where(Suppression.email_key == email.lower()))


def _reason(web: LiveWeb, email: str) -> str | None:
    found = _suppressed(web, email)
    return found.reason if found else None


def _status(web: LiveWeb, email: str) -> str | None:
    with web.env.sessions() as session:
        return session.scalar(select(Subscriber.status).where(Subscriber.email_key == email.lower()))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _event_complaint(web: LiveWeb, email: str) -> str:
    """An event-publishing complaint as SES publishes it through SNS: Subject, Message ending in a newline."""
    note = json.dumps(ses.complaint(email, at=_now(), form="event")) + "\n"
    return web.signer.envelope(note, subject=EVENT_SUBJECT)


def test_signed_messages_of_every_form_are_accepted_and_applied_once(live_web: LiveWeb) -> None:
    web = live_web
    bodies = {
        "bounce-v1": web.signer.envelope(
            ses.bounce("signed-bounce@example.org", at=_now(), message_id="s-1")
        ),
        "complaint-v1": _event_complaint(web, "signed-complaint@example.org"),
        "hello-v2": web.signer.envelope("Hello world", version="2"),
        "lambda-v2": web.signer.envelope(
            ses.bounce("lambda-bounce@example.org", at=_now(), message_id="s-2", form="event"),
            lambda_names=True,
            message_attributes={"campaign": "12"},
            version="2",
        ),
        "confirmation-v1": web.signer.envelope("confirm me", kind="SubscriptionConfirmation"),
    }
    results = {}
    for name, body in bodies.items():
        before = web.trap.connections
        response = web.post_sns(body, json.loads(body)["Type"])
        results[name] = (response.status_code, response.json(), web.trap.connections - before)
    for name in ("bounce-v1", "complaint-v1", "lambda-v2"):
        assert results[name][0] == 200 and results[name][1]["status"] == "applied", results[name]
        assert results[name][2] == 0
    hello = results["hello-v2"]
    assert hello[0] == 200 and hello[1]["status"] == "ignored"  # authentic, but no SES notification
    # verified, so the server visited its SubscribeURL: through the trap (no network here), which failed
    confirmation = results["confirmation-v1"]
    assert confirmation[0] == 502 and confirmation[2] == 1, confirmation
    # nobody subscribes at these addresses: the suppressions still hold, with their evidence
    assert _reason(web, "signed-bounce@example.org") == "hard_bounce"
    assert _reason(web, "signed-complaint@example.org") == "complaint"
    assert _reason(web, "lambda-bounce@example.org") == "hard_bounce"
    stored = _stored(web)
    for name in ("bounce-v1", "complaint-v1", "hello-v2", "lambda-v2"):  # SNS delivers at least once
        response = web.post_sns(bodies[name], "Notification")
        expected = "ignored" if name == "hello-v2" else "duplicate"  # never applied: never a duplicate
        assert response.status_code == 200 and response.json()["status"] == expected
    assert _stored(web) == stored


@pytest.mark.parametrize("field", ["Message", "MessageId", "Subject", "Timestamp", "TopicArn"])
def test_one_changed_character_of_a_signed_field_is_refused_and_stores_nothing(
    live_web: LiveWeb, field: str
) -> None:
    web = live_web
    email = f"tampered-{field.lower()}@example.org"
    genuine = _event_complaint(web, email)
    changed = tampered(genuine, field)
    before, trapped = _stored(web), web.trap.connections
    response = web.post_sns(changed, "Notification")
    assert response.status_code == 403, response.text
    assert response.json() == {"error": "unverified", "detail": "the message could not be verified"}
    assert _stored(web) == before and web.trap.connections == trapped
    assert _suppressed(web, email) is None
    assert "refused a message" in web.log_text()
    assert web.post_sns(genuine, "Notification").json()["status"] == "applied"  # the change alone refused it


@pytest.mark.parametrize("short_signature", [False, True], ids=["placeholder", "cut-short"])
@pytest.mark.parametrize("kind", DOCUMENTED_KINDS)
def test_documentation_style_examples_are_refused(
    live_web: LiveWeb, kind: Kind, short_signature: bool
) -> None:
    """Current, from the accepted topic, naming the server's certificate: only the signature is wrong."""
    request = documentation_example(
        kind,
        topic_arn=DEFAULT_TOPIC,
        signing_cert_url=live_web.signer.cert_url,
        at=_now(),
        short_signature=short_signature,
    )
    headers, body = split_http_text(request)
    before, trapped = _stored(live_web), live_web.trap.connections
    response = live_web.post_sns(body, headers["x-amz-sns-message-type"])
    assert response.status_code == 403, response.text
    assert _stored(live_web) == before and live_web.trap.connections == trapped  # no SubscribeURL visit


def test_old_messages_and_expired_certificates_are_refused(live_web: LiveWeb) -> None:
    web = live_web
    old = web.signer.envelope(
        bounce_notification("old@example.org", message_id="m", at=_now()),
        timestamp=_now() - dt.timedelta(hours=2),
    )
    expired = SnsSigner(
        cert_name="SimpleNotificationService-expired.pem",
        valid_from=_now() - dt.timedelta(days=60),
        valid_days=30,
    )
    assert web.settings.sns_cert_dir is not None
    expired.write_certificate(web.settings.sns_cert_dir)
    stale = expired.envelope(bounce_notification("stale@example.org", message_id="m", at=_now()))
    before = _stored(web)
    for body in (old, stale):
        assert web.post_sns(body).status_code == 403
    assert _stored(web) == before
    assert _suppressed(web, "old@example.org") is None and _suppressed(web, "stale@example.org") is None


def test_header_and_body_type_must_agree_and_the_header_is_required(live_web: LiveWeb) -> None:
    body = live_web.signer.envelope(bounce_notification("header@example.org", message_id="m", at=_now()))
    assert live_web.post_sns(body, "SubscriptionConfirmation").status_code == 400
    assert live_web.post_sns(body, None).status_code == 400
    assert _suppressed(live_web, "header@example.org") is None


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'{"Type": "Notification"}', b"\xff\xfe", b'{"Type": 5, "TopicArn": []}'],
)
def test_malformed_bodies_are_400_and_store_nothing(live_web: LiveWeb, body: bytes) -> None:
    before = _stored(live_web)
    response = live_web.post_sns(body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_input"
    assert _stored(live_web) == before


def test_a_body_over_the_limit_is_413(live_web: LiveWeb) -> None:
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
def test_signing_cert_url_attacks_are_refused_without_a_connection(live_web: LiveWeb, url: str) -> None:
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
def test_subscribe_url_attacks_are_refused_without_a_connection(live_web: LiveWeb, url: str) -> None:
    web = live_web
    body = web.signer.envelope("confirm me", kind="SubscriptionConfirmation", subscribe_url=url)
    before, trapped = _stored(web), web.trap.connections
    response = web.post_sns(body, "SubscriptionConfirmation")
    assert response.status_code == 403, response.text
    assert _stored(web) == before and web.trap.connections == trapped


def test_a_genuine_confirmation_signed_here_is_visited_through_the_trap(live_web: LiveWeb) -> None:
    web = live_web
    trapped = web.trap.connections
    body = web.signer.envelope("confirm me", kind="SubscriptionConfirmation", version="2")
    response = web.post_sns(body, "SubscriptionConfirmation")
    assert response.status_code == 502  # the trap closes the connection: SNS will send it again
    assert web.trap.connections == trapped + 1


def test_an_unsubscribe_confirmation_is_stored_and_logged_and_visits_nothing(live_web: LiveWeb) -> None:
    web = live_web
    before, trapped = _stored(web), web.trap.connections
    body = web.signer.envelope("deactivated", kind="UnsubscribeConfirmation")
    response = web.post_sns(body, "UnsubscribeConfirmation")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "logged", "message_id": json.loads(body)["MessageId"]}
    assert _stored(web) == before + 1 and web.trap.connections == trapped
    assert web.post_sns(body, "UnsubscribeConfirmation").json()["status"] == "logged"
    assert _stored(web) == before + 1


def test_with_confirmation_off_the_subscribe_url_is_logged_not_visited(tmp_path) -> None:
    from plugins.web import start_web

    web = start_web(tmp_path, NEWSLETTER_SNS_CONFIRM_SUBSCRIPTIONS="false")
    try:
        body = web.signer.envelope("confirm me", kind="SubscriptionConfirmation")
        response = web.post_sns(body, "SubscriptionConfirmation")
        assert response.status_code == 200, response.text
        message_id = json.loads(body)["MessageId"]
        assert response.json() == {"status": "confirmation_logged", "message_id": message_id}
        assert web.trap.connections == 0 and _stored(web) == 1
        assert "asks to be confirmed: open https://sns.us-east-1.amazonaws.com/" in web.log_text()
    finally:
        web.stop()
        web.trap.close()


def test_a_certificate_not_issued_to_sns_is_refused(live_web: LiveWeb) -> None:
    impostor = SnsSigner(
        common_name="attacker.amazonaws.com", cert_name="SimpleNotificationService-impostor.pem"
    )
    assert live_web.settings.sns_cert_dir is not None
    impostor.write_certificate(live_web.settings.sns_cert_dir)
    body = impostor.envelope(bounce_notification("impostor@example.org", message_id="m", at=_now()))
    assert live_web.post_sns(body).status_code == 403
    assert _suppressed(live_web, "impostor@example.org") is None


def test_a_topic_not_in_the_allow_list_is_refused(live_web: LiveWeb) -> None:
    body = live_web.signer.envelope(
        bounce_notification("other-topic@example.org", message_id="m", at=_now()),
        topic_arn="arn:aws:sns:us-east-1:999999999999:someone-elses",
    )
    assert live_web.post_sns(body).status_code == 403
    assert _suppressed(live_web, "other-topic@example.org") is None


def test_signed_bounce_and_complaint_update_subscribers_once(live_web: LiveWeb) -> None:
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
    suppression = _suppressed(web, "hard@example.org")
    assert suppression is not None and suppression.evidence  # the SES feedback id: what said so
    for body in (bounce, complaint):
        response = web.post_sns(body)
        assert response.json() == {**response.json(), "status": "duplicate", "changes": 0}


def test_many_notifications_at_once_are_each_stored_and_applied_once(live_web: LiveWeb) -> None:
    """Concurrent deliveries share commits (the writer's groups); every one is applied, each once."""
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
def test_a_timestamp_out_of_range_is_a_400_not_a_500(live_web: LiveWeb, timestamp: str) -> None:
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
def test_certificate_urls_no_sns_has_are_refused_not_crashed_on(live_web: LiveWeb, url: str) -> None:
    body = live_web.signer.envelope("x", signing_cert_url=url)
    response = live_web.post_sns(body.encode("utf-8", "surrogatepass"))
    assert response.status_code in (400, 403), response.text


def test_a_key_given_twice_is_refused(live_web: LiveWeb) -> None:
    """Which of two values counts must not differ between a quick look and the parser."""
    body = live_web.signer.envelope(bounce_notification("twice@example.org", message_id="m", at=_now()))
    doubled = body[:-1] + ', "SigningCertURL": "https://sns.us-east-1.amazonaws.com/Other.pem"}'
    response = live_web.post_sns(doubled)
    assert response.status_code == 400 and "appears twice" in response.json()["detail"]


def test_characters_no_database_stores_fail_nothing_and_never_give_a_5xx(live_web: LiveWeb) -> None:
    """Verified notifications holding what no database text column takes (here a lone surrogate in the
    address, as SES would escape it) arrive among good ones, five copies of one bounce under five
    MessageIds: every one is answered 200, the good ones are applied, the odd bounce once (its address,
    not one we could send to, suppresses nobody), and nothing gets a 5xx. (They were 400s: refused by
    PostgreSQL, they failed their whole group first.)"""
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
