"""What the admin API and the dashboard do with campaigns, over the campaign services: upload an issue
as a draft, preview one segment, the pre-send checklist (cached for the pages), a start in the background
once ``lifecycle.check_start`` allows it, and a live progress view cheap enough to poll every second
during a send.

Progress during a send: the campaign row's counters (kept by the senders) give the counts; the rate comes
from samples of those counters this process took, not from a scan of the ledger; the per-segment
breakdown (a GROUP BY over the ledger) is refreshed in the background at most every few seconds, and a
poll answers from the last one: no request waits for a scan of 100,000 rows.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from mailer import broker
from mailer.errors import ConfigurationError, ConflictError, InputError, NotFoundError
from mailer.rendering import placeholders
from mailer.rendering.preview import sample_values
from mailer.rendering.render import render_segments
from mailer.sending import queries
from mailer.sending.models import segment_key
from mailer.sending.states import CampaignStatus
from mailer.services import drafts, lifecycle, watch
from mailer.services.checklist import Plan, plan_campaign
from mailer.services.drafts import segment_label
from mailer.services.env import AppEnv
from mailer.services.listing import CampaignInfo
from subscribers import store as subscriber_store
from subscribers import suppression

__all__ = [
    "Series",
    "activity",
    "campaign_sends",
    "growth",
    "LiveProgress",
    "SegmentProgress",
    "Upload",
    "checklist",
    "live_progress",
    "parse_segment",
    "resume_stepwise",
    "segment_preview",
    "start_checked",
    "stored_draft",
    "upload",
]

log = logging.getLogger(__name__)
MAX_ISSUE_BYTES = 2 * 1024 * 1024
SEGMENT_REFRESH_SECONDS = 5.0
_STARTING = threading.Lock()
RATE_WINDOW_SECONDS = 60.0
PLAN_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Upload:
    campaign: CampaignInfo
    warnings: tuple[str, ...]


def upload(
    session: Session,
    env: AppEnv,
    content: bytes,
    filename: str,
    *,
    audience: str = "subscribers",
    transport: str | None = None,
) -> Upload:
    """A draft campaign from an uploaded Markdown issue, with the issue's parse warnings."""
    if len(content) > MAX_ISSUE_BYTES:
        raise InputError(f"the issue is {len(content):,} bytes; at most {MAX_ISSUE_BYTES:,}")
    try:
        markdown = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"the issue is not UTF-8 text (byte {exc.start})") from None
    if "\0" in markdown:
        raise InputError("the issue holds a NUL character: not a text file")
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    source = "".join(c for c in name if c.isprintable())[:200] or "upload.md"  # it is shown and logged
    try:
        draft = drafts.parse_draft(env, markdown, source, audience=audience, transport=transport)
    except ConfigurationError as exc:  # a transport this installation refuses: the caller's choice
        raise InputError(str(exc)) from None
    info = lifecycle.create(session, draft, now=env.now())
    log.info("campaign %d created from an upload of %s", info.id, source, extra={"campaign_id": info.id})
    return Upload(info, draft.issue.warnings)


# --- the checklist -----------------------------------------------------------------------------------
def checklist(env: AppEnv, campaign_id: int) -> Plan:
    """The campaign's segments with their reader counts, and the pre-send checks (cached a few seconds:
    rendering every segment is the costly part, and a dashboard shows it on several pages)."""
    cache = env.caches.plans
    hit = cache.get(campaign_id)
    if hit is not None and time.monotonic() - hit[0] < PLAN_CACHE_SECONDS:
        return hit[1]
    found = plan_campaign(env, campaign_id)
    _keep_plan(env, campaign_id, found)
    return found


def _keep_plan(env: AppEnv, campaign_id: int, plan: Plan) -> None:
    cache = env.caches.plans
    if len(cache) > 100:
        cache.clear()
    cache[campaign_id] = (time.monotonic(), plan)


def start_checked(env: AppEnv, campaign_id: int, *, override: bool = False) -> Plan:
    """Start a draft or scheduled campaign once ``lifecycle.check_start`` allows it (its status, and its
    checklist passing or overridden): with workers, a Celery task fills the ledger; embedded, a thread of
    this process sends. Returns the checklist used (and keeps it for the pages that show it)."""
    with env.sessions() as session:  # checked afresh: the audience may have changed since the page was shown
        plan = lifecycle.check_start(session, env, campaign_id, override=override)
    _keep_plan(env, campaign_id, plan)
    starting = env.caches.starting
    with _STARTING:  # two clicks at once in this process: the second is told, not queued behind
        if campaign_id in starting:
            raise ConflictError(f"campaign {campaign_id} is being started already")
        starting.add(campaign_id)
    if env.distributed:
        env.celery().send_task(broker.START_CAMPAIGN, args=(campaign_id,))
        threading.Timer(10.0, starting.discard, args=(campaign_id,)).start()
    else:
        threading.Thread(
            target=_start_here, args=(env, campaign_id, starting), name=f"start-{campaign_id}", daemon=True
        ).start()
    return plan


def _start_here(env: AppEnv, campaign_id: int, starting: set[int]) -> None:
    try:
        _send_here(env, campaign_id, lambda: lifecycle.start_stepwise(env, campaign_id))
    finally:
        starting.discard(campaign_id)


def _send_here(env: AppEnv, campaign_id: int, work: Callable[[], object]) -> None:
    try:
        watch.run_and_watch(env, campaign_id, work, _ignore)
    except ConflictError as exc:  # another process started it first: only one claim can win
        log.warning("campaign %d: %s", campaign_id, exc)
    except Exception:  # run_and_watch paused it with the cause; the dashboard shows the reason
        log.exception("campaign %d: sending in the web process stopped", campaign_id)


def resume_stepwise(env: AppEnv, campaign_id: int) -> None:
    """Resume a paused campaign: its status changes now (or ConflictError); the queued rows go back to
    the workers, or (embedded) a thread of this process sends them."""
    with env.transaction() as session:
        resumption = lifecycle.resume(session, env, campaign_id)
    if env.distributed:
        lifecycle.continue_stepwise(env, resumption)
    else:
        threading.Thread(
            target=_send_here,
            args=(env, campaign_id, lambda: lifecycle.continue_stepwise(env, resumption)),
            name=f"resume-{campaign_id}",
            daemon=True,
        ).start()


def stored_draft(env: AppEnv, campaign_id: int) -> drafts.Draft:
    """The campaign's issue, parsed from its stored Markdown (test sends use it)."""
    return drafts.campaign_draft(env, campaign_id)


def _ignore(_state: object) -> None:
    return None


# --- previews ----------------------------------------------------------------------------------------
def parse_segment(text: str) -> frozenset[str]:
    """A segment as the API names it: topic keys joined by commas; "" or "general" for general only."""
    text = text.strip()
    if text in ("", "general"):
        return frozenset()
    keys = [k.strip() for k in text.split(",")]
    if any(not k or len(k) > 64 or not k.replace("-", "").replace("_", "").isalnum() for k in keys):
        raise InputError(f"segment {text[:100]!r} is not a comma-separated list of topic keys")
    return frozenset(keys)


def segment_preview(env: AppEnv, campaign_id: int, segment: frozenset[str], kind: str = "html") -> str:
    """The segment's email as a reader would see it (sample links that act on nobody): the rendering
    stored when the campaign started, else rendered now from its Markdown."""
    if kind not in ("html", "text"):
        raise InputError(f"a preview is html or text, not {kind!r}")
    draft = stored_draft(env, campaign_id)
    with env.read_sessions() as session:
        stored = {s.segment_key: s for s in queries.segments_of(session, campaign_id)}
    unknown = segment - draft.issue.topics
    if unknown:
        raise NotFoundError(f"the issue has no section for {', '.join(sorted(unknown))}")
    key = segment_key(draft.issue.segment_for(segment))
    if key in stored:
        html, text = stored[key].html, stored[key].text
    else:
        rendering = render_segments(draft.issue, [segment], env.brand, registry=env.registry)
        only = next(iter(rendering.values()))
        html, text = only.html, only.text
    values = sample_values(env.brand)
    body = html if kind == "html" else text
    return placeholders.SplitTemplate.split(body, escape_html=kind == "html").fill(values)


# --- live progress -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentProgress:
    segment: frozenset[str]
    recipients: int
    by_status: dict[str, int]

    @property
    def label(self) -> str:
        return segment_label(self.segment)


@dataclass(frozen=True)
class LiveProgress:
    progress: watch.Progress  # counters from the campaign row; rate from this process's samples
    segments: tuple[SegmentProgress, ...]
    segments_as_of: datetime | None

    @property
    def percent(self) -> float:
        p = self.progress
        return 100.0 * p.done / p.total if p.total else (100.0 if p.status == CampaignStatus.DONE else 0.0)


@dataclass
class Tracker:
    """Per campaign, in this process: samples of the sent counter, and the last per-segment counts."""

    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))
    segments: tuple[SegmentProgress, ...] = ()
    segments_at: float = 0.0
    segments_as_of: datetime | None = None
    refreshing: bool = False
    settled: bool = False  # counted after the campaign ended: final
    lock: threading.Lock = field(default_factory=threading.Lock)


def _tracker(env: AppEnv, campaign_id: int) -> Tracker:
    trackers = env.caches.trackers
    tracker = trackers.get(campaign_id)
    if tracker is None:
        if len(trackers) > 1000:
            trackers.clear()
        tracker = trackers.setdefault(campaign_id, Tracker())
    return tracker


def _rate(tracker: Tracker, sent: int, now: float) -> float:
    """Messages per second over the last minute of this process's samples of the counter."""
    with tracker.lock:
        samples = tracker.samples
        if not samples or samples[-1][1] != sent or now - samples[-1][0] > 1.0:
            samples.append((now, sent))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW_SECONDS:
            samples.popleft()
        first_time, first_sent = samples[0]
    return (sent - first_sent) / (now - first_time) if now - first_time >= 1.0 else 0.0


def _segment_counts(session: Session, campaign_id: int) -> tuple[SegmentProgress, ...]:
    counts = queries.count_by_segment_status(session, campaign_id)
    return tuple(
        SegmentProgress(s.segment, s.recipients, counts.get(s.id, {}))
        for s in queries.segment_headers(session, campaign_id)
    )


def _refresh_segments(env: AppEnv, campaign_id: int, tracker: Tracker) -> None:
    try:
        with env.read_sessions() as session:
            found = _segment_counts(session, campaign_id)
        tracker.segments, tracker.segments_as_of = found, env.now()
    except Exception:  # the next poll tries again; the counts shown are the last ones
        log.exception("campaign %d: per-segment progress could not be counted", campaign_id)
    finally:
        tracker.segments_at = time.monotonic()
        tracker.refreshing = False


def live_progress(session: Session, env: AppEnv, campaign_id: int) -> LiveProgress:
    """The progress bar's data: one read of the campaign row, the rate from samples of its counter, and
    per-segment counts no older than a few seconds (counted in the background while it sends)."""
    state = watch.progress(session, campaign_id, now=env.now(), exact=False)
    tracker = _tracker(env, campaign_id)
    now = time.monotonic()
    rate = _rate(tracker, state.sent, now) if state.status == CampaignStatus.SENDING else 0.0
    remaining = state.total - state.done
    eta = remaining / rate if rate > 0 and state.status == CampaignStatus.SENDING else None
    state = dataclasses.replace(state, rate=rate, eta_seconds=eta)
    stale = now - tracker.segments_at > SEGMENT_REFRESH_SECONDS
    settled = state.status in (CampaignStatus.DONE, CampaignStatus.CANCELLED)
    if not tracker.segments_as_of or (settled and not tracker.settled):
        # the first look counts now, in this request; so does the first look once nothing changes any more
        # (those counts are final: never counted again)
        tracker.segments = _segment_counts(session, campaign_id)
        tracker.segments_as_of, tracker.segments_at, tracker.settled = env.now(), now, settled
    elif stale and not settled and not tracker.refreshing:
        with tracker.lock:
            start = not tracker.refreshing
            tracker.refreshing = True
        if start:
            threading.Thread(target=_refresh_segments, args=(env, campaign_id, tracker), daemon=True).start()
    return LiveProgress(state, tracker.segments, tracker.segments_as_of)


# --- charts' data --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """Counts per time bucket: ``starts`` are the buckets' start times (UTC), oldest first."""

    starts: tuple[datetime, ...]
    values: dict[str, tuple[int, ...]]


def _buckets(now: datetime, count: int, seconds: int) -> list[int]:
    last = int(now.timestamp()) // seconds
    return list(range(last - count + 1, last + 1))


def activity(session: Session, *, now: datetime, days: int = 14) -> Series:
    """Messages sent, bounces and complaints (suppressions made by SES feedback) per day."""
    day = 86400
    buckets = _buckets(now, days, day)
    since = datetime.fromtimestamp(buckets[0] * day, tz=UTC)
    sent = queries.sends_per_bucket(session, since, day)
    feedback = suppression.suppressions_per_bucket(session, since, day)
    return Series(
        tuple(datetime.fromtimestamp(b * day, tz=UTC) for b in buckets),
        {
            "sent": tuple(sent.get(b, 0) for b in buckets),
            "bounced": tuple(
                feedback.get(("hard_bounce", b), 0) + feedback.get(("soft_bounce_limit", b), 0)
                for b in buckets
            ),
            "complained": tuple(feedback.get(("complaint", b), 0) for b in buckets),
        },
    )


def campaign_sends(session: Session, campaign_id: int, *, now: datetime, minutes: int = 60) -> Series:
    """A campaign's messages sent per minute over the last ``minutes``."""
    buckets = _buckets(now, minutes, 60)
    since = datetime.fromtimestamp(buckets[0] * 60, tz=UTC)
    sent = queries.sends_per_bucket(session, since, 60, campaign_id=campaign_id)
    return Series(
        tuple(datetime.fromtimestamp(b * 60, tz=UTC) for b in buckets),
        {"sent": tuple(sent.get(b, 0) for b in buckets)},
    )


def growth(session: Session, *, now: datetime, days: int = 30) -> Series:
    """Subscribers on the list (every status) at the end of each day."""
    day = 86400
    buckets = _buckets(now, days, day)
    since = datetime.fromtimestamp(buckets[0] * day, tz=UTC)
    created = subscriber_store.created_per_bucket(session, since, day)
    total = subscriber_store.count_created_before(session, since)
    values = []
    for b in buckets:
        total += created.get(b, 0)
        values.append(total)
    return Series(
        tuple(datetime.fromtimestamp(b * day, tz=UTC) for b in buckets), {"subscribers": tuple(values)}
    )
