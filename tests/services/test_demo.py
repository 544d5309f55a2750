"""``newsletter demo``'s core (mailer.services.demo), in process on its own data folder: the summary it ends
with says what the database and the outbox hold; its bounce and complaint arrive as signed SNS
notifications through the webhook's verify-and-store path and suppress their readers with the evidence;
a notification tampered with, or signed by anyone else, is refused and changes nothing; the production
defaults accept neither the demo's topic nor its certificate."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mailer import samples
from mailer.cli.send_cmds import demo_signer
from mailer.feedback.samples import bounce_notification
from mailer.feedback.sns import SnsSignatureError
from mailer.services import feedback
from mailer.services.demo import (
    DEMO_TOPIC_ARN,
    DemoSns,
    demo_settings,
    receive_signed_stepwise,
    run_demo_stepwise,
)
from mailer.services.env import AppEnv
from mailer.settings import Settings
from mailer.testing.sns_signer import SnsSigner


@pytest.fixture
def demo_env(tmp_path, monkeypatch) -> AppEnv:
    """The demo's settings in an empty folder (no .env, no NEWSLETTER_ variable of the test run)."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("NEWSLETTER_")]:
        monkeypatch.delenv(name)
    # an absolute folder: engines are kept per database URL, and every test's relative one is the same
    return AppEnv.from_settings(demo_settings().model_copy(update={"data_dir": tmp_path / "var"}))


def _rows(db: Path, sql: str, **params: object) -> list[tuple]:
    """Read the demo's SQLite file on a connection of its own (not the service's engine)."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


def test_the_summary_says_what_the_database_and_the_outbox_hold(demo_env, tmp_path):
    report = run_demo_stepwise(demo_env, make_signer=lambda: demo_signer(demo_env))
    summary, db = report.summary, tmp_path / "var" / "newsletter.db"

    with samples.SUBSCRIBERS.open(encoding="utf-8-sig", newline="") as stream:
        csv_rows = sum(1 for row in csv.DictReader(stream) if any(row.values()))
    [(stored,)] = _rows(db, "SELECT count(*) FROM subscribers")
    [(active,)] = _rows(db, "SELECT count(*) FROM subscribers WHERE status = 'active'")
    assert (summary.imported, summary.rejected, summary.active) == (stored, csv_rows - stored, active)
    assert summary.rejected == 2 and summary.active == 26  # the sample's two bad lines; 28 sent, 2 fed back

    readers = _rows(
        db,
        "SELECT r.segment_key, count(d.id) FROM deliveries d JOIN segment_renderings r ON r.id = d.segment_id"
        " WHERE d.campaign_id = :c GROUP BY r.segment_key",
        c=summary.campaign_id,
    )
    assert Counter({tuple(sorted(k for k in key.split(",") if k)): n for key, n in readers}) == Counter(
        dict(summary.segments)
    )
    assert len(summary.segments) == len(readers) == 21

    outbox = tmp_path / "var" / "outbox"
    [(sent,)] = _rows(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'")
    assert summary.outbox == outbox.resolve()
    assert summary.outbox_messages == summary.sent == sent == len(list(outbox.glob("1.*.eml"))) == 28

    suppressions = _rows(db, "SELECT email, reason, evidence FROM suppressions ORDER BY id DESC")
    assert summary.suppressions == len(suppressions) == 2
    assert [(s.email, s.reason, s.evidence) for s in summary.suppressed] == suppressions

    assert (
        summary.preview.is_file() and summary.preview == (tmp_path / "var/preview/issue/index.html").resolve()
    )
    assert (summary.dashboard_command, summary.dashboard_url) == (
        "newsletter serve",
        "http://127.0.0.1:8000/admin/",
    )


def test_the_bounce_and_the_complaint_come_signed_through_the_webhook_path_and_suppress(demo_env, tmp_path):
    report = run_demo_stepwise(demo_env, make_signer=lambda: demo_signer(demo_env))
    db = tmp_path / "var" / "newsletter.db"
    fed = {f.kind: f for f in report.summary.fed}
    assert sorted(fed) == ["bounce", "complaint"]

    for kind, reason, status in [
        ("bounce", "hard_bounce", "bounced"),
        ("complaint", "complaint", "complained"),
    ]:
        result = fed[kind].result
        assert result.verified and not result.duplicate and result.kind == "Notification"
        [(body, feedback_id, verified, topic)] = _rows(
            db,
            "SELECT body, feedback_id, verified, topic_arn FROM feedback_messages WHERE message_id = :m",
            m=result.key,
        )
        envelope = json.loads(body)  # stored as received: the SNS envelope, signed with the demo's key
        assert envelope["SignatureVersion"] == "2" and envelope["Signature"]
        assert envelope["SigningCertURL"] == report.fed_back.cert_url
        assert verified and topic == DEMO_TOPIC_ARN == envelope["TopicArn"]
        [(evidence,)] = _rows(
            db,
            "SELECT evidence FROM suppressions WHERE email = :e AND reason = :r",
            e=fed[kind].email,
            r=reason,
        )
        assert feedback_id and feedback_id in evidence
        [(now,)] = _rows(db, "SELECT status FROM subscribers WHERE email = :e", e=fed[kind].email)
        assert now == status
    [(local,)] = _rows(
        db, "SELECT count(*) FROM feedback_messages WHERE verified = 0 OR kind != 'Notification'"
    )
    assert local == 0  # nothing took the unverified path


def _count(db: Path, table: str) -> int:
    return _rows(db, f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608 (a table name of this test)


def test_a_tampered_or_foreign_notification_is_refused_and_changes_nothing(demo_env, tmp_path):
    sns = DemoSns.create(demo_env, demo_signer(demo_env))
    now = demo_env.now()
    genuine = sns.notification(bounce_notification("victim@example.org", message_id="ses-1", at=now), at=now)

    tampered = json.loads(genuine)
    tampered["Message"] = tampered["Message"].replace("victim@example.org", "someone-else@example.org")
    impostor = SnsSigner(cert_name="SimpleNotificationService-newsletter-demo.pem")  # same URL, other key
    forged = impostor.envelope(
        bounce_notification("victim@example.org", message_id="ses-2", at=now),
        topic_arn=DEMO_TOPIC_ARN,
        version="2",
    )
    other_topic = sns.signer.envelope(
        bounce_notification("victim@example.org", message_id="ses-3", at=now),
        topic_arn="arn:aws:sns:us-east-1:000000000000:someone-elses-topic",
        version="2",
    )
    other_cert = impostor.envelope(
        bounce_notification("victim@example.org", message_id="ses-4", at=now),
        topic_arn=DEMO_TOPIC_ARN,
        signing_cert_url="https://sns.us-east-1.amazonaws.com/SimpleNotificationService-other.pem",
        version="2",
    )
    db = tmp_path / "var" / "newsletter.db"
    assert demo_env.sessions  # the database opened (and migrated) before anything arrives
    for body in [json.dumps(tampered), forged, other_topic, other_cert]:
        with pytest.raises(SnsSignatureError):
            receive_signed_stepwise(demo_env, [body], sns.verifier)
    assert _count(db, "feedback_messages") == _count(db, "suppressions") == 0

    [result] = receive_signed_stepwise(demo_env, [genuine], sns.verifier)  # the same, untouched: accepted
    assert result.verified and [c.note for c in result.changes if c.changed] == [
        "victim@example.org: suppressed (hard_bounce), no subscriber with this address"
    ]
    assert _count(db, "feedback_messages") == _count(db, "suppressions") == 1


def test_the_defaults_accept_neither_the_demo_topic_nor_its_certificate(demo_env, tmp_path):
    sns = DemoSns.create(demo_env, demo_signer(demo_env))
    now = demo_env.now()
    body = sns.notification(bounce_notification("victim@example.org", message_id="ses-1", at=now), at=now)
    assert DEMO_TOPIC_ARN not in Settings(_env_file=None).sns_topic_arns  # type: ignore[call-arg]

    production = AppEnv.from_settings(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    with pytest.raises(SnsSignatureError, match="NEWSLETTER_SNS_TOPIC_ARNS lists no topic"):
        receive_signed_stepwise(demo_env, [body], feedback.verifier(production))
    # the demo's own settings, without the pinned certificate: a folder that does not hold it
    unpinned = feedback.verifier(demo_env, cert_dir=tmp_path / "certificates")
    with pytest.raises(
        SnsSignatureError, match="no certificate SimpleNotificationService-newsletter-demo.pem"
    ):
        receive_signed_stepwise(demo_env, [body], unpinned)
