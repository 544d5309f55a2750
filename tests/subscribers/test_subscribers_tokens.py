"""Signed link tokens: round trip, what the signature binds (purpose, key, scope, the subscriber's salt),
key rotation, tampering, expiry; links read against the database name one person for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subscribers.db import utcnow
from subscribers.errors import InvalidToken
from subscribers.links import read_link
from subscribers.preferences import add_subscriber, remove_subscriber
from subscribers.tokens import PURPOSES, make_token, token_subject, verify_token

NOW = datetime(2026, 3, 1, tzinfo=UTC)
SALT = "0123456789abcdef"


@given(st.integers(min_value=0, max_value=2**62), st.sampled_from(PURPOSES), st.text(min_size=1, max_size=16))
def test_round_trip(subscriber_id, purpose, salt):
    token = make_token("s3cret", subscriber_id, purpose, salt=salt, now=utcnow())
    assert (
        verify_token("s3cret", token, purpose, salt=salt, now=utcnow())
        == subscriber_id
        == token_subject(token)
    )
    assert token.replace("-", "").replace("_", "").replace(".", "").isalnum()  # URL-safe


def test_a_token_is_bound_to_its_purpose_key_scope_and_salt():
    token = make_token("s3cret", 42, "view", salt=SALT, scope="campaign:7", now=utcnow())
    assert verify_token("s3cret", token, "view", salt=SALT, scope="campaign:7", now=utcnow()) == 42
    for changed in (
        {"keys": "other"},
        {"purpose": "unsubscribe"},
        {"scope": "campaign:8"},
        {"scope": ""},
        {"salt": "fedcba9876543210"},
    ):
        args = {"keys": "s3cret", "purpose": "view", "salt": SALT, "scope": "campaign:7", **changed}
        with pytest.raises(InvalidToken):
            verify_token(
                args["keys"], token, args["purpose"], salt=args["salt"], scope=args["scope"], now=utcnow()
            )


def test_keys_rotate_newest_first_and_every_listed_key_still_reads():
    old = make_token("old-key", 42, "unsubscribe", salt=SALT, now=utcnow())
    new = make_token("new-key", 42, "unsubscribe", salt=SALT, now=utcnow())
    assert verify_token(["new-key", "old-key"], old, "unsubscribe", salt=SALT, now=utcnow()) == 42
    assert verify_token(["new-key", "old-key"], new, "unsubscribe", salt=SALT, now=utcnow()) == 42
    with pytest.raises(InvalidToken):  # once the old key is dropped, its links end
        verify_token(["new-key"], old, "unsubscribe", salt=SALT, now=utcnow())


def test_changing_the_id_breaks_the_signature():
    token = make_token("s3cret", 42, "view", salt=SALT, now=utcnow())
    _, rest = token.split(".", 1)
    with pytest.raises(InvalidToken):
        verify_token("s3cret", "43." + rest, "view", salt=SALT, now=utcnow())


@given(st.text(max_size=120))
def test_garbage_is_rejected_never_crashes(text):
    with pytest.raises(InvalidToken):
        verify_token("s3cret", text, "confirm", salt=SALT, now=utcnow())


@pytest.mark.parametrize(
    "token", ["1.2.ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ", "1.2.abc\u200b", "１.2.x", None, 42, "1.2." + "a" * 400]
)
def test_non_ascii_and_odd_tokens_are_invalid_not_errors(token):
    with pytest.raises(InvalidToken):
        verify_token("s3cret", token, "confirm", salt=SALT, now=utcnow())  # type: ignore[arg-type]
    with pytest.raises(InvalidToken):
        token_subject(token)


def test_max_age():
    token = make_token("s3cret", 7, "confirm", salt=SALT, now=NOW)
    assert (
        verify_token("s3cret", token, "confirm", salt=SALT, max_age=3600, now=NOW + timedelta(minutes=59))
        == 7
    )
    with pytest.raises(InvalidToken, match="expired"):
        verify_token("s3cret", token, "confirm", salt=SALT, max_age=3600, now=NOW + timedelta(minutes=61))


def test_a_deleted_subscribers_links_never_act_on_whoever_comes_next(db_session):
    first = add_subscriber(db_session, "first@example.org", now=utcnow())
    db_session.commit()
    link = make_token("k", first.id, "unsubscribe", salt=first.token_salt, now=utcnow())
    assert read_link(db_session, "k", link, "unsubscribe", now=utcnow()).email == "first@example.org"
    old_id = first.id
    remove_subscriber(db_session, first.id, now=utcnow())
    db_session.commit()
    second = add_subscriber(db_session, "second@example.org", now=utcnow())
    db_session.commit()
    assert second.id != old_id, "ids are never given again (SQLite AUTOINCREMENT, PostgreSQL sequences)"
    assert second.token_salt != first.token_salt
    with pytest.raises(InvalidToken):
        read_link(db_session, "k", link, "unsubscribe", now=utcnow())
    nobody = make_token(
        "k", 10**9, "unsubscribe", salt=SALT, now=utcnow()
    )  # an id nobody holds: the same answer
    with pytest.raises(InvalidToken, match="not valid"):
        read_link(db_session, "k", nobody, "unsubscribe", now=utcnow())
