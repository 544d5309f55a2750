"""One recipient never stops a campaign: 2,000 subscribers, 20 of them at internationalised domains with
display names (some long, in Chinese), 3 that the mail server refuses, and 2 old rows whose address no
message can carry. Every healthy recipient gets the issue; each bad row fails alone, with its reason."""

from __future__ import annotations

import email
import email.header
import email.policy

import pytest
from sqlalchemy import insert, select
from support.clock import Clock
from support.paths import REFERENCE_ISSUE
from support.population import populate

from mailer.sending.models import Delivery
from mailer.sending.sender import SendContext, send_batch_stepwise
from mailer.services import drafts, lifecycle, watch
from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.db import utcnow
from subscribers.models import Subscriber
from subscribers.preferences import add_subscriber

TOPICS = ["nova", "neutron", "tempest", "ceilometer"]
LONG_NAME = "欧阳" + "春晓" * 12 + "的读者"  # 29 characters: more than one RFC 2047 word holds


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_recipients_fail_alone_and_everyone_else_gets_the_issue(tmp_path, database_url, smtp_sink):
    settings = Settings(
        data_dir=tmp_path, database_url=database_url, secret_key="k", smtp_host=smtp_sink.host,
        smtp_port=smtp_sink.port, batch_size=100,
    )  # fmt: skip
    batches: list[tuple[int, list[int]]] = []
    env = AppEnv.from_settings(settings, clock=Clock(), enqueue=lambda c, ids: batches.append((c, list(ids))))
    draft = drafts.read_draft(env, REFERENCE_ISSUE, transport="smtp")
    population = populate(database_url, 2000 - 25, TOPICS, issue_topics=draft.issue.topics)
    with env.transaction() as session:
        idn = {
            add_subscriber(
                session, f"reader{n}@例え{n}.jp", name=LONG_NAME if n % 4 == 0 else f"读者{n}", now=utcnow()
            ).id
            for n in range(20)
        }
        refused = [f"refused{n}@example.net" for n in range(3)]
        for address in refused:
            add_subscriber(session, address, name="Refused", now=utcnow())
            smtp_sink.refuse[address] = (550, "5.1.1 no such mailbox")
        now = utcnow()
        # rows from before addresses were normalised to ASCII: no SMTP envelope or header can carry them
        old_rows = [
            {"email": f"用户{n}@例え.jp", "email_key": f"用户{n}@例え.jp", "name": "旧", "locale": "zh",
             "status": "active", "created_at": now, "changed_at": now, "source": "legacy", "soft_bounces": 0}
            for n in range(2)
        ]  # fmt: skip
        legacy = session.scalars(insert(Subscriber).returning(Subscriber.id), old_rows).all()
    with env.transaction() as session:
        campaign_id = lifecycle.create(session, draft, now=env.now()).id
    lifecycle.start_stepwise(env, campaign_id)
    context = SendContext(settings, env.sessions, env.clock, sleep=lambda _s: None)
    for cid, ids in batches:
        send_batch_stepwise(context, cid, ids)
    context.close()

    with env.sessions() as session:
        state = watch.progress(session, campaign_id, now=env.now())
        rows = {row.subscriber_id: row for row in session.scalars(select(Delivery))}
        idn_addresses = {
            s.id: s.email for s in session.scalars(select(Subscriber).where(Subscriber.id.in_(idn)))
        }
    healthy = len(population.expected) + len(idn)
    assert state.status == "done", state.reason
    assert state.sent == healthy and state.failed == 5 and state.total == healthy + 5
    assert all(address.endswith(".jp") and "@reader" not in address for address in idn_addresses.values())
    assert all(".xn--" not in a and "@xn--" in a for a in idn_addresses.values()), "stored in ASCII (IDNA)"
    for address in refused:
        row = next(r for r in rows.values() if r.email == address)
        assert (
            row.status == "failed"
            and row.error_code == "smtp-550"
            and "no such mailbox" in (row.last_error or "")
        )
    for subscriber_id in legacy:
        row = rows[subscriber_id]
        assert row.status == "failed" and row.error_code == "build"
        assert "cannot be built" in (row.last_error or "")
    assert {rows[i].status for i in idn} == {"sent"}

    received = {rcpts[0]: data for _from, rcpts, data in smtp_sink.received}
    assert len(received) == healthy
    for subscriber_id, address in idn_addresses.items():
        message = email.message_from_bytes(received[address], policy=email.policy.SMTP)
        head = received[address].split(b"\r\n\r\n", 1)[0].decode("ascii")  # every header is 7-bit ASCII
        to_lines = head.split("\r\nTo: ", 1)[1].split("\r\nMessage-ID:", 1)[0].split("\r\n")
        assert all(len(line) <= 78 - (0 if n else 4) for n, line in enumerate(to_lines)), to_lines
        words = [w for w in " ".join(to_lines).split() if w.startswith("=?")]
        assert all(len(word) <= 75 for word in words)
        phrase = " ".join(to_lines).rsplit(" <", 1)[0].strip()
        name = str(email.header.make_header(email.header.decode_header(phrase)))
        expected = LONG_NAME if LONG_NAME in name else f"读者{sorted(idn).index(subscriber_id)}"
        assert name == expected
        assert message["To"].addresses[0].addr_spec == address
