"""``newsletter demo``: the whole job once on embedded defaults: import subscribers, render the issue per
segment, send to the file outbox, feed a bounce and a complaint back through the webhook's path, and sum
up what is in the database and the outbox.

By default it sends the package's sample issue to its sample subscribers as the sample newsletter
(mailer/samples); another issue or list is passed in. The database and the outbox live under the data
folder (``./var``); nothing else is needed: no Redis, no database server, no SES, no SNS.

The feedback is what SNS would POST: SES notifications in SNS envelopes, signed (SignatureVersion 2) with
a key and a self-signed certificate made for this run and kept in memory only. They go through what the
webhook does with a body: ``verified_message`` (signature, certificate, topic, age), then a
``FeedbackWriter`` (store once, apply, commit). Only this run's verifier trusts that certificate (pinned
for its URL, nothing fetched), and only the demo's settings accept the demo's topic: the production
verifier and the defaults accept neither.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select

from mailer import samples
from mailer.errors import InputError
from mailer.feedback.apply import verified_message
from mailer.feedback.results import FeedbackResult
from mailer.feedback.samples import bounce_notification, complaint_notification
from mailer.feedback.sns import NOTIFICATION, SnsVerifier
from mailer.services import drafts, feedback, lifecycle, listing, previews, subscribers, watch
from mailer.services.env import AppEnv
from mailer.services.feedback_writer import FeedbackWriter
from mailer.settings import Settings
from subscribers.importer import ImportReport
from subscribers.models import Suppression
from subscribers.states import SubscriberStatus

__all__ = [
    "DEMO_CERT_NAME",
    "DEMO_TOPIC_ARN",
    "DemoReport",
    "DemoSigner",
    "DemoSns",
    "DemoStep",
    "FedBack",
    "Imported",
    "Sent",
    "Summary",
    "demo_settings",
    "receive_signed_stepwise",
    "run_demo_stepwise",
    "summary",
]

# The demo's SNS topic and certificate URL: accepted by the demo's settings and verifier only
DEMO_TOPIC_ARN = "arn:aws:sns:us-east-1:000000000000:newsletter-demo-feedback"
DEMO_CERT_NAME = "SimpleNotificationService-newsletter-demo.pem"
SUPPRESSIONS_SHOWN = 10


def demo_settings() -> Settings:
    """Embedded mode (SQLite and the file outbox under the data folder, sending in this process) as the
    sample newsletter (mailer/samples/demo.env); the user's .env and environment still win, but for the
    SNS topics: the demo accepts its own topic, and only it."""
    branded = Settings(_env_file=(samples.DEMO_ENV, ".env"))  # type: ignore[call-arg]
    return branded.model_copy(
        update={
            "broker_url": None,
            "redis_url": None,
            "database_url": None,
            "transport": "file",
            "file_send_rate": None,
            "sns_topic_arns": [DEMO_TOPIC_ARN],
        }
    )


class DemoSigner(Protocol):
    """What signs the demo's SNS notifications: ``mailer.testing.sns_signer.SnsSigner``, which the demo's
    front end makes (the core never imports test tools)."""

    @property
    def cert_url(self) -> str: ...

    @property
    def certificate_pem(self) -> bytes: ...

    def envelope(
        self, payload: Mapping[str, Any], *, topic_arn: str, timestamp: dt.datetime | None = ..., version: str
    ) -> str: ...


@dataclass(frozen=True)
class DemoSns:
    """SNS as the demo plays it: a key and a certificate for sns.amazonaws.com made for this run (never
    written anywhere), and a verifier by the settings that trusts that certificate alone."""

    signer: DemoSigner
    verifier: SnsVerifier

    @classmethod
    def create(cls, env: AppEnv, signer: DemoSigner) -> DemoSns:
        verifier = feedback.verifier(env, pinned={signer.cert_url: signer.certificate_pem})
        verifier.certificates(signer.cert_url)  # into the verifier's cache (and its URL checked) now
        return cls(signer, verifier)

    def notification(self, payload: Mapping[str, Any], *, at: dt.datetime) -> str:
        """An SNS HTTP body carrying ``payload`` from the demo's topic, signed (SignatureVersion 2)."""
        return self.signer.envelope(payload, topic_arn=DEMO_TOPIC_ARN, timestamp=at, version="2")


def receive_signed_stepwise(
    env: AppEnv, bodies: Sequence[str], verifier: SnsVerifier
) -> list[FeedbackResult]:
    """What the webhook does with SNS Notification bodies: verify each (SnsSignatureError or InputError
    before anything is stored), then hand them to a FeedbackWriter, which stores each once and applies it
    in a group commit; the results in order."""
    now = env.now()
    messages = [verified_message(b, verifier, now=now, message_type_header=NOTIFICATION) for b in bodies]
    writer = FeedbackWriter(env)
    try:
        waiting = [writer.enqueue(message) for message in messages]
        return [done.result(timeout=writer.timeout) for done in waiting]
    finally:
        writer.close()


@dataclass(frozen=True)
class Imported:
    source: Path
    report: ImportReport
    rejects: tuple[str, ...]


@dataclass(frozen=True)
class Sent:
    draft: drafts.Draft
    detail: listing.CampaignDetail
    outbox: Path
    outbox_files: int
    preview: Path  # the static preview's index: every segment at 600 px and 375 px


@dataclass(frozen=True)
class Fed:
    kind: str  # "bounce" or "complaint"
    email: str
    result: FeedbackResult


@dataclass(frozen=True)
class FedBack:
    fed: tuple[Fed, ...]  # a hard bounce and a complaint, for the first two sent
    cert_url: str
    topic_arn: str


@dataclass(frozen=True)
class Suppressed:
    email: str
    reason: str
    evidence: str


@dataclass(frozen=True)
class Summary:
    """What the database and the outbox hold once the demo is done (read back, not counted along)."""

    imported: int  # rows of the CSV stored (added, updated or unchanged)
    rejected: int
    active: int  # subscribers active now, after the feedback
    campaign_id: int
    segments: tuple[tuple[tuple[str, ...], int], ...]  # (topics, readers) per rendered segment
    outbox: Path
    outbox_messages: int  # .eml files of this campaign
    sent: int  # ledger rows sent
    fed: tuple[Fed, ...]
    suppressions: int  # the whole list
    suppressed: tuple[Suppressed, ...]  # its newest entries, newest first
    preview: Path
    dashboard_command: str
    dashboard_url: str


DemoStep = Imported | Sent | FedBack | Summary


@dataclass
class DemoReport:
    imported: Imported
    sent: Sent
    fed_back: FedBack
    summary: Summary


def run_demo_stepwise(
    env: AppEnv,
    *,
    make_signer: Callable[[], DemoSigner],
    issue: Path = samples.ISSUE,
    subscribers_csv: Path = samples.SUBSCRIBERS,
    on_step: Callable[[str], None] = lambda _text: None,
    on_done: Callable[[DemoStep], None] = lambda _step: None,
    on_progress: Callable[[watch.Progress], None] = lambda _state: None,
) -> DemoReport:
    """The steps; ``on_step`` announces each, ``on_done`` gets each one's result as it ends. ``make_signer``
    makes the SNS signer of step 3 (named ``DEMO_CERT_NAME``, valid now)."""
    if env.distributed:
        raise InputError("the demo runs on embedded defaults; unset NEWSLETTER_BROKER_URL")
    if not subscribers_csv.is_file():
        raise InputError(f"{subscribers_csv}: subscriber CSV not found; pass --subscribers FILE.csv")
    draft = drafts.read_draft(env, issue, transport="file")  # a bad issue fails before any change

    # the key, the certificate and the SNS region list verification reads take a few tenths of a second:
    # made meanwhile, while the subscribers are imported and the issue is sent
    pool = ThreadPoolExecutor(1, thread_name_prefix="demo-sns")
    preparing = pool.submit(lambda: DemoSns.create(env, make_signer()))
    pool.shutdown(wait=False)  # the thread ends with its one task

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
        campaign = lifecycle.create(session, draft, now=env.now())
    watch.run_and_watch(env, campaign.id, lambda: lifecycle.start_stepwise(env, campaign.id), on_progress)
    with env.sessions() as session:
        detail = listing.detail(session, campaign.id, now=env.now())
        sample = listing.sent_sample(session, campaign.id, limit=2)
    outbox = env.settings.resolved_outbox_dir.resolve()
    preview = previews.preview_issue(env, issue).index.resolve()
    sent = Sent(draft, detail, outbox, _outbox_files(outbox, campaign.id), preview)
    on_done(sent)

    on_step(
        "3. SES feedback for two sent messages (a hard bounce, a complaint): SNS notifications signed with "
        "a demo certificate made for this run, verified, stored and applied as the webhook does"
    )
    sns = preparing.result()
    now, sender, tag = env.now(), env.settings.sender_address, str(campaign.id)
    wanted: list[tuple[str, str, dict[str, Any]]] = []
    if len(sample) >= 2:
        bounced, complained = sample
        wanted = [
            ("bounce", bounced.email, bounce_notification(
                bounced.email, message_id=bounced.message_id, at=now, campaign=tag, sender=sender)),
            ("complaint", complained.email, complaint_notification(
                complained.email, message_id=complained.message_id, at=now, campaign=tag, sender=sender)),
        ]  # fmt: skip
    results = receive_signed_stepwise(env, [sns.notification(n, at=now) for _, _, n in wanted], sns.verifier)
    fed = tuple(Fed(kind, email, result) for (kind, email, _), result in zip(wanted, results, strict=True))
    fed_back = FedBack(fed, sns.signer.cert_url, DEMO_TOPIC_ARN)
    on_done(fed_back)

    done = summary(env, campaign.id, report, fed, preview)
    on_done(done)
    return DemoReport(imported, sent, fed_back, done)


def summary(
    env: AppEnv, campaign_id: int, report: ImportReport, fed: tuple[Fed, ...], preview: Path
) -> Summary:
    """The demo's figures, read from the database and the outbox."""
    outbox = env.settings.resolved_outbox_dir.resolve()
    with env.sessions() as session:
        stats = subscribers.statistics(session)
        detail = listing.detail(session, campaign_id, now=env.now())
        total = session.scalar(select(func.count()).select_from(Suppression)) or 0
        newest = session.scalars(
            select(Suppression).order_by(Suppression.id.desc()).limit(SUPPRESSIONS_SHOWN)
        )
        suppressed = tuple(Suppressed(s.email, s.reason, s.evidence or "") for s in newest)
    segments = sorted(detail.segments, key=lambda s: (len(s.segment), s.label))
    return Summary(
        imported=report.added + report.updated + report.unchanged,
        rejected=report.rejected,
        active=stats.by_status.get(SubscriberStatus.ACTIVE, 0),
        campaign_id=campaign_id,
        segments=tuple((tuple(sorted(s.segment)), s.recipients) for s in segments),
        outbox=outbox,
        outbox_messages=_outbox_files(outbox, campaign_id),
        sent=detail.progress.sent,
        fed=fed,
        suppressions=total,
        suppressed=suppressed,
        preview=preview,
        dashboard_command="newsletter serve",
        dashboard_url=env.urls.admin(),
    )


def _outbox_files(outbox: Path, campaign_id: int) -> int:
    return sum(1 for _ in outbox.glob(f"{campaign_id}.*.eml"))
