"""The dry run of a campaign (``plan``): the segments the audience falls into, their readers and sizes,
and the pre-send checks, each of which fails when it should."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from support.clock import Clock
from support.paths import REFERENCE_ISSUE, TYPO_ISSUE
from support.population import populate

from mailer.errors import error_kind
from mailer.services import checklist, drafts, lifecycle
from mailer.services.env import AppEnv
from mailer.settings import Settings

TOPICS = ["nova", "neutron", "tempest", "ceilometer"]


def _env(tmp_path, database_url, **settings) -> AppEnv:  # type: ignore[no-untyped-def]
    config = Settings(data_dir=tmp_path, database_url=database_url, **settings)
    return AppEnv.from_settings(config, clock=Clock())


def _checks(plan: checklist.Plan) -> dict[str, bool]:
    return {check.name: check.ok for check in plan.checks}


def test_a_ready_plan_counts_every_reader_in_their_segment(tmp_path, database_url):
    env = _env(tmp_path, database_url, sender_address="weekly@openstack-cn.example.org")
    draft = drafts.read_draft(env, REFERENCE_ISSUE)
    population = populate(database_url, 200, TOPICS, issue_topics=draft.issue.topics)
    plan = checklist.plan(env, draft)
    assert plan.ready, [c for c in plan.checks if not c.ok]
    assert plan.recipients == len(population.expected)
    by_segment: dict[frozenset[str], int] = {}
    for _email, segment in population.expected.values():
        by_segment[segment] = by_segment.get(segment, 0) + 1
    assert {s.segment: s.recipients for s in plan.segments} == by_segment
    assert all(0 < s.html_bytes < 102 * 1024 and s.text_bytes > 0 and s.sections for s in plan.segments)
    everyone = checklist.plan(env, drafts.read_draft(env, REFERENCE_ISSUE, audience="all"))
    assert [(s.segment, s.recipients) for s in everyone.segments] == [(draft.issue.topics, plan.recipients)]


def test_each_check_fails_when_it_should(tmp_path, database_url):
    env = _env(tmp_path, database_url)  # the default sender address, nobody subscribed
    checks = _checks(checklist.plan(env, drafts.read_draft(env, TYPO_ISSUE)))
    assert checks["the issue parses without warnings"] is False  # "Tempst"
    assert checks["the sender identity is set"] is False
    assert checks["the audience is not empty"] is False
    huge = tmp_path / "huge.md"
    huge.write_text("---\ntitle: Huge\n---\n\n## News\n\n" + "长" * 120_000 + "\n", encoding="utf-8")
    plan = checklist.plan(env, drafts.read_draft(env, huge))
    checks = _checks(plan)
    assert checks["every segment's HTML is under 102 KB (Gmail clips larger ones)"] is False
    assert (
        checks["every link is absolute http(s)"] and checks["unsubscribe and preference links in every part"]
    )
    assert not plan.ready


def test_a_failing_checklist_refuses_a_start_and_a_schedule_unless_overridden(tmp_path, database_url, caplog):
    env = _env(tmp_path, database_url)  # the default sender address, nobody subscribed: two checks fail
    with env.transaction() as session:
        campaign_id = lifecycle.create(session, drafts.read_draft(env, REFERENCE_ISSUE), now=env.now()).id
    later = env.now() + timedelta(days=1)
    for attempt in (
        lambda session: lifecycle.check_start(session, env, campaign_id),
        lambda session: lifecycle.schedule(session, env, campaign_id, later),
    ):
        with pytest.raises(checklist.ChecklistFailed) as refused, env.transaction() as session:
            attempt(session)
        kind = error_kind(refused.value)
        assert kind is not None and (kind.exit_code, kind.http_status) == (4, 409)
        assert [check.name for check in refused.value.failing] == [
            "the sender identity is set", "the audience is not empty"
        ]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="mailer.services.checklist"), env.transaction() as session:
        info = lifecycle.schedule(session, env, campaign_id, later, override=True)
    assert info.status == "scheduled"
    (logged,) = [r for r in caplog.records if getattr(r, "override", False)]
    assert logged.campaign_id == campaign_id and "the audience is not empty" in logged.getMessage()  # type: ignore[attr-defined]
