"""Subscribers written straight into a test database, with who must (and must not) get mail."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Population:
    """Subscribers written for a sending test; ``expected`` is who must get mail, with their segment."""

    expected: dict[int, tuple[str, frozenset[str]]]  # subscriber id -> (email, followed issue topics)
    excluded: dict[int, str]  # subscriber id -> why not (unsubscribed, pending, suppressed)


def populate(
    url: str, count: int, topics: list[str], *, issue_topics: frozenset[str], seed: int = 7
) -> Population:
    """``count`` subscribers following random subsets of ``topics``; about 5% unsubscribed, 3% pending
    and 3% suppressed (an active subscriber on the suppression list: the send-time check must catch it)."""
    import random

    from sqlalchemy import insert, select

    from mailer.database import sync_registry
    from mailer.settings import Settings
    from mailer.topics import load_registry
    from subscribers.db import make_session_factory, open_database, utcnow
    from subscribers.models import Subscriber, Suppression, Topic, subscriber_topics

    rng = random.Random(seed)
    engine = open_database(url)
    with make_session_factory(engine)() as session:
        sync_registry(session, load_registry(Settings().registry_file))
        session.commit()
        topic_ids = dict(session.execute(select(Topic.key, Topic.id)).all())
        now = utcnow()
        rows: list[dict[str, object]] = []
        follows: list[dict[str, int]] = []
        suppressions: list[dict[str, object]] = []
        plan: list[tuple[str, frozenset[str], str, bool]] = []
        for n in range(count):
            followed = frozenset(t for t in topics if rng.random() < 0.35)
            roll = rng.random()
            status = "unsubscribed" if roll < 0.05 else "pending" if roll < 0.08 else "active"
            suppressed = status == "active" and roll > 0.97
            email = f"user{n}.{seed}@example.com"
            rows.append(
                {
                    "email": email,
                    "email_key": email,
                    "name": f"用户{n}" if n % 3 == 0 else None,
                    "locale": "zh" if n % 2 else "en",
                    "status": status,
                    "created_at": now,
                    "changed_at": now,
                    "source": "test",
                    "soft_bounces": 0,
                }
            )
            plan.append((email, followed, status, suppressed))
            if suppressed:
                suppressions.append(
                    {"email_key": email, "email": email, "reason": "hard_bounce", "created_at": now}
                )
        ids = list(
            session.scalars(insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True), rows)
        )
        expected: dict[int, tuple[str, frozenset[str]]] = {}
        excluded: dict[int, str] = {}
        for subscriber_id, (email, followed, status, suppressed) in zip(ids, plan, strict=True):
            follows.extend({"subscriber_id": subscriber_id, "topic_id": topic_ids[t]} for t in followed)
            if status != "active":
                excluded[subscriber_id] = status
            elif suppressed:
                excluded[subscriber_id] = "suppressed"
            else:
                expected[subscriber_id] = (email, followed & issue_topics)
        if follows:
            session.execute(insert(subscriber_topics), follows)
        if suppressions:
            session.execute(insert(Suppression), suppressions)
        session.commit()
    engine.dispose()
    return Population(expected, excluded)
