"""The subscriber services the CLI and the web app share: pages by keyset, filters, search, event logs,
topic lists in every separator, and bad arguments as input errors (SQLite and PostgreSQL)."""

from __future__ import annotations

import io

import pytest
from support.clock import Clock

from mailer.database import sync_registry
from mailer.errors import InputError
from mailer.services import subscribers as service
from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.db import utcnow
from subscribers.errors import InvalidInput


@pytest.fixture
def env(tmp_path, database_url) -> AppEnv:
    env = AppEnv.from_settings(Settings(data_dir=tmp_path, database_url=database_url), clock=Clock())
    with env.transaction() as session:
        sync_registry(session, env.registry)
        for n in range(23):
            topics = "Nova，neutron" if n % 2 else "cinder、Heat"  # the full-width separators readers type
            status = "pending" if n % 5 == 0 else "active"
            service.add(
                session, env, f"reader{n:02d}@example.org", name=f"读者{n}", topics=topics, status=status
            )
        service.add(session, env, "under_score%@example.org", name="100% Sure")
    return env


@pytest.mark.parametrize("status", ["bounced", "unsubscribed", "--status"])
def test_an_import_gives_new_subscribers_only_an_import_status(env, status):
    with pytest.raises(InvalidInput) as refused:
        service.import_stepwise(env, io.BytesIO(b"email\nnew@example.org\n"), status=status)
    assert (
        str(refused.value) == f"an import gives new subscribers the status active or pending, not {status!r}"
    )
    with env.transaction() as session:
        assert service.search(session, "new@example.org", limit=5) == [], "nothing imported"
    assert [str(s) for s in service.ImportStatus] == ["active", "pending"]


def test_pages_follow_each_other_by_id_with_no_gap_and_no_overlap(env):
    seen, after = [], 0
    with env.transaction() as session:
        while True:
            page = service.list_subscribers(session, env, after_id=after, limit=5)
            seen += [row.id for row in page.rows]
            if page.next_after_id is None:
                break
            after = page.next_after_id
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 24


def test_pages_filter_by_status_and_topic(env):
    with env.transaction() as session:
        pending = service.list_subscribers(session, env, status="pending", limit=100).rows
        nova = service.list_subscribers(session, env, topic="Nova", limit=100).rows  # a name works too
        heat_active = service.list_subscribers(session, env, topic="heat", status="active", limit=100).rows
    assert {r.email for r in pending} == {f"reader{n:02d}@example.org" for n in range(0, 23, 5)}
    assert all("nova" in r.topics and "neutron" in r.topics for r in nova) and len(nova) == 11
    assert all(r.status == "active" and "heat" in r.topics for r in heat_active)
    assert len(heat_active) == 12 - 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit must be between 1 and 1000"),
        ({"limit": 10**6}, "limit must be between 1 and 1000"),
        ({"status": "bogus"}, "unknown status 'bogus'"),
        ({"topic": "nosuch"}, "unknown topic 'nosuch'"),
        ({"topic": "nova,heat"}, "name one topic"),
        ({"after_id": -1}, "after_id must be between 0 and"),
        ({"after_id": 2**64}, "after_id must be between 0 and"),
    ],
)
def test_bad_page_arguments_are_input_errors(env, kwargs, message):
    with env.transaction() as session, pytest.raises(InputError, match=message):
        service.list_subscribers(session, env, **kwargs)


def test_search_matches_address_or_name_and_takes_wildcards_literally(env):
    with env.transaction() as session:
        assert [r.email for r in service.search(session, "READER1", limit=3)] == [
            "reader10@example.org", "reader11@example.org", "reader12@example.org",
        ]  # fmt: skip
        assert [r.email for r in service.search(session, "读者7")] == ["reader07@example.org"]
        assert [r.email for r in service.search(session, "%")] == ["under_score%@example.org"]
        assert [r.email for r in service.search(session, "_score")] == ["under_score%@example.org"]
        with pytest.raises(InputError):
            service.search(session, "  ")


def test_a_subscribers_events_come_oldest_first_with_the_actions_it_allows(env):
    with env.transaction() as session:
        service.add_topic(session, env, "octavia", "Octavia")
        from subscribers.preferences import set_topics

        row = service.show(session, "reader03@example.org").row
        set_topics(session, row.id, ["octavia"], source="test", now=utcnow())
    with env.transaction() as session:
        detail = service.show(session, "READER03@example.org")
        events = service.events_of(session, row.id)
    assert [e.kind for e in events] == ["subscribed", "topics_changed"] == [e.kind for e in detail.events]
    assert detail.row.topics == ("octavia",)
    assert detail.actions == ("unsubscribe", "bounce", "complain", "block")


def test_topic_keys_are_checked_and_registry_topics_are_renamed_in_their_file(env):
    with env.transaction() as session:
        assert service.add_topic(session, env, "Octavia", "Octavia", "负载均衡") is True
        for bad in ("a,b", "bad key!", "", "x" * 65, "中文"):
            with pytest.raises(ValueError, match="invalid topic key"):
                service.add_topic(session, env, bad, "Bad")
        with pytest.raises(InputError, match="comes from the topic registry"):
            service.add_topic(session, env, "nova", "Nova renamed")
    with env.transaction() as session:
        assert [t.key for t in service.topics(session)].count("octavia") == 1
