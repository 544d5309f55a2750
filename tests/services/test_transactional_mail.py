"""Transactional mail through real transports: a signup's confirmation email and a new preferences link,
sent by the services through the file outbox and through moto's SES server, carry transactional headers
(no List-Id, no bulk precedence, no campaign in Feedback-ID) and a link that works."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from support.clock import Clock

from mailer.database import sync_registry
from mailer.services import mail
from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.db import utcnow
from subscribers.links import read_link
from subscribers.optin import confirm, signup

SECRET = "tx-secret"


def _env(tmp_path, database_url, **settings) -> AppEnv:  # type: ignore[no-untyped-def]
    config = Settings(
        data_dir=tmp_path, database_url=database_url, secret_key=SECRET, sender_address="news@example.org",
        name="OpenStack社区动态", base_url="https://news.example.org", **settings,
    )  # fmt: skip
    env = AppEnv.from_settings(config, clock=Clock())
    with env.transaction() as session:
        sync_registry(session, env.registry)
    return env


def _assert_transactional(message: EmailMessage, to: str) -> None:
    assert message["To"] == to and message["From"].addresses[0].addr_spec == "news@example.org"
    for bulk in (
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Precedence",
        "X-Newsletter-Campaign",
    ):
        assert message[bulk] is None, f"a transactional email carries no {bulk}"
    assert message["Auto-Submitted"] == "auto-generated"
    kind, mark, domain = message["Feedback-ID"].split(":")
    assert mark == "transactional" and domain == "example.org" and not kind.isdigit(), "no campaign part"
    assert message["Message-ID"].endswith("@example.org>") and message["Date"]
    assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None


def _signup(env: AppEnv, address: str, locale: str = "zh"):  # type: ignore[no-untyped-def]
    with env.transaction() as session:
        return signup(session, address, secret=SECRET, topics=["nova"], locale=locale, now=env.now())


def test_a_confirmation_email_goes_through_the_file_outbox_and_confirms(tmp_path, database_url):
    env = _env(tmp_path, database_url, transport="file")
    result = _signup(env, "Ann@Example.org")
    sent = mail.send_confirmation(env, result)
    assert sent is not None
    files = list(env.settings.resolved_outbox_dir.glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    _assert_transactional(message, "Ann@example.org")
    assert message["Subject"] == "请确认订阅 OpenStack社区动态"
    assert message["Feedback-ID"].startswith("confirm:")
    text = message.get_body(("plain",)).get_content()
    assert sent.mail.action_url in text and sent.mail.action_url in message.get_body(("html",)).get_content()
    token = sent.mail.action_url.rsplit("/", 1)[1]
    with env.transaction() as session:
        assert confirm(session, token, secret=SECRET, now=env.now()).status == "active"
    assert mail.send_confirmation(env, _signup(env, "ann@example.org")) is None, "active: nothing to confirm"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_confirmation_and_a_preferences_link_go_through_moto_ses(tmp_path, database_url, moto_ses):
    env = _env(tmp_path, database_url, transport="ses", ses_endpoint_url=moto_ses.endpoint_url)
    sent = mail.send_confirmation(env, _signup(env, "bob@example.org", locale="en"))
    assert sent is not None
    with env.transaction() as session:
        subscriber_id = confirm(
            session, sent.mail.action_url.rsplit("/", 1)[1], secret=SECRET, now=env.now()
        ).subscriber_id
    with env.transaction() as session:
        link = mail.send_preferences_link(session, env, subscriber_id)
    received = moto_ses.sent_messages()
    assert [item.id for item in received] == [sent.provider_id, link.provider_id]
    first, second = (
        email.message_from_string(item.raw_data, policy=email.policy.default) for item in received
    )
    _assert_transactional(first, "bob@example.org")
    _assert_transactional(second, "bob@example.org")
    assert first["Subject"] == "Please confirm your subscription to OpenStack社区动态"
    assert second["Feedback-ID"].startswith("preferences-link:")
    url = link.mail.action_url
    assert url in second.get_body(("plain",)).get_content()
    with env.sessions() as session:
        assert (
            read_link(session, SECRET, url.rsplit("/", 1)[1], "preferences", now=utcnow()).id == subscriber_id
        )
    env.close()
