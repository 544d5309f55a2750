"""``newsletter demo``: the whole job once on embedded defaults: import subscribers, render the issue per
segment, send to the file outbox, feed a bounce and a complaint back, and report what happened.

By default it sends the package's sample issue to its sample subscribers as the sample newsletter
(mailer/samples); another issue or list is passed in. The database and the outbox live under the data
folder (``./var``); nothing else is needed: no Redis, no database server, no SES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mailer import samples
from mailer.errors import InputError
from mailer.feedback.apply import FeedbackResult
from mailer.feedback.samples import bounce_notification, complaint_notification
from mailer.services import campaigns, feedback, subscribers
from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.importer import ImportReport

__all__ = ["DemoReport", "DemoStep", "FedBack", "Imported", "Sent", "demo_settings", "run_demo_stepwise"]


def demo_settings() -> Settings:
    """Embedded mode (SQLite and the file outbox under the data folder, sending in this process) as the
    sample newsletter (mailer/samples/demo.env); the user's .env and environment still win."""
    branded = Settings(_env_file=(samples.DEMO_ENV, ".env"))  # type: ignore[call-arg]
    return branded.model_copy(
        update={
            "broker_url": None,
            "redis_url": None,
            "database_url": None,
            "transport": "file",
            "file_send_rate": None,
        }
    )


@dataclass(frozen=True)
class Imported:
    source: Path
    report: ImportReport
    rejects: tuple[str, ...]


@dataclass(frozen=True)
class Sent:
    draft: campaigns.Draft
    detail: campaigns.CampaignDetail
    outbox: Path
    outbox_files: int


@dataclass(frozen=True)
class FedBack:
    results: tuple[FeedbackResult, ...]  # a hard bounce and a complaint, for the first two sent


DemoStep = Imported | Sent | FedBack


@dataclass
class DemoReport:
    imported: Imported
    sent: Sent
    fed_back: FedBack


def run_demo_stepwise(
    env: AppEnv,
    *,
    issue: Path = samples.ISSUE,
    subscribers_csv: Path = samples.SUBSCRIBERS,
    on_step: Callable[[str], None] = lambda _text: None,
    on_done: Callable[[DemoStep], None] = lambda _step: None,
    on_progress: Callable[[campaigns.Progress], None] = lambda _state: None,
) -> DemoReport:
    """The three steps; ``on_step`` announces each, ``on_done`` gets each one's result as it ends."""
    if env.distributed:
        raise InputError("the demo runs on embedded defaults; unset NEWSLETTER_BROKER_URL")
    if not subscribers_csv.is_file():
        raise InputError(f"{subscribers_csv}: subscriber CSV not found; pass --subscribers FILE.csv")
    draft = campaigns.read_draft(env, issue, transport="file")  # a bad issue fails before any change

    on_step(f"1. importing {subscribers_csv}")
    rejects: list[str] = []
    with subscribers_csv.open("rb") as stream:
        report = subscribers.import_stepwise(
            env, stream, on_reject=lambda r: rejects.append(f"line {r.line}: {r.reason}")
        )
    imported = Imported(subscribers_csv, report, tuple(rejects))
    on_done(imported)

    on_step(f"2. sending {issue.name} ({draft.issue.title}) through the file outbox")
    with env.transaction() as session:
        campaign = campaigns.create(session, draft, now=env.now())
    campaigns.run_and_watch(env, campaign.id, lambda: campaigns.start_stepwise(env, campaign.id), on_progress)
    with env.sessions() as session:
        detail = campaigns.detail(session, campaign.id, now=env.now())
        sample = campaigns.sent_sample(session, campaign.id, limit=2)
    outbox = env.settings.resolved_outbox_dir.resolve()
    sent = Sent(draft, detail, outbox, len(list(outbox.glob(f"{campaign.id}.*.eml"))))
    on_done(sent)

    on_step("3. SES feedback for two sent messages: one hard bounce, one complaint")
    now, sender, tag = env.now(), env.settings.sender_address, str(campaign.id)
    notifications = []
    if len(sample) >= 2:
        bounced, complained = sample
        notifications = [
            bounce_notification(
                bounced.email, message_id=bounced.message_id, at=now, campaign=tag, sender=sender
            ),
            complaint_notification(
                complained.email, message_id=complained.message_id, at=now, campaign=tag, sender=sender
            ),
        ]
    results = tuple(feedback.receive(env, n, trust_unsigned=True, as_of=now) for n in notifications)
    fed_back = FedBack(results)
    on_done(fed_back)
    return DemoReport(imported, sent, fed_back)
