"""Transactional emails (zh and en): the signup confirmation and a new preferences link carry a working,
escaped link of the URL contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from mailer.database import sync_registry
from mailer.rendering.render import Brand
from mailer.rendering.transactional import confirmation_email, preferences_link_email
from mailer.settings import Settings
from subscribers.db import utcnow
from subscribers.optin import confirm, signup
from subscribers.tokens import make_token, verify_token

SECRET = "confirm-secret"
NOW = datetime(2026, 7, 1, tzinfo=UTC)
BRAND = Brand.from_settings(Settings(base_url="https://news.example.org/", name="OpenStack社区动态"))


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        ("zh", ["请确认你的订阅", "Nova 计算", "确认订阅"]),
        ("en", ["Please confirm", "Nova", "Confirm subscription"]),
    ],
)
def test_confirmation_email_confirms(db_session, registry, locale, words):
    sync_registry(db_session, registry)
    result = signup(
        db_session, "o'brien+x@example.org", secret=SECRET, topics=["nova"], locale=locale, now=NOW
    )
    email = confirmation_email(result, BRAND, registry)
    assert email.kind == "confirm" and email.to == "o'brien+x@example.org" and email.lang == locale
    assert "OpenStack社区动态" in email.subject
    for word in words:
        assert word in email.html and word in email.text
    assert "o&#39;brien+x@example.org" in email.html or "o&#x27;brien+x@example.org" in email.html
    assert "placeholder" not in email.html + email.text
    assert "fonts.googleapis" not in email.html
    [href] = set(re.findall(r'href="(https://news\.example\.org/confirm/[^"]+)"', email.html))
    assert href == email.action_url and email.action_url in email.text
    token = href.rsplit("/", 1)[1]
    assert confirm(db_session, token, secret=SECRET, now=NOW).status == "active"


def test_a_signup_that_needs_no_email_has_none(db_session, registry):
    sync_registry(db_session, registry)
    signup(db_session, "a@example.org", secret=SECRET, now=NOW)
    result = signup(db_session, "a@example.org", secret=SECRET, now=NOW.replace(hour=5))
    assert result.confirm_token is not None
    confirm(db_session, result.confirm_token, secret=SECRET, now=NOW.replace(hour=5))
    again = signup(db_session, "a@example.org", secret=SECRET, now=NOW.replace(hour=9))
    assert again.outcome == "already_active"
    with pytest.raises(ValueError):
        confirmation_email(again, Brand.from_settings(Settings()), registry)


@pytest.mark.parametrize(
    ("locale", "heading"), [("zh", "你的订阅设置"), ("en", "Your subscription settings")]
)
def test_the_preferences_link_email_opens_the_readers_preference_centre(locale, heading):
    token = make_token(SECRET, 42, "preferences", salt="s4lt", now=NOW)
    email = preferences_link_email("ann@example.org", locale, token, BRAND)
    assert email.kind == "preferences_link" and email.lang == locale
    assert heading in email.html and heading in email.text and "Topics" not in email.text
    assert email.action_url == f"https://news.example.org/preferences/{token}"
    assert f'href="{email.action_url}"' in email.html and email.action_url in email.text
    assert (
        verify_token(SECRET, email.action_url.rsplit("/", 1)[1], "preferences", salt="s4lt", now=utcnow())
        == 42
    )
