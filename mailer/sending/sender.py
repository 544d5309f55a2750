"""The batch send loop a worker runs: claim rows, build each message by substitution, take a token from the
transport's shared rate limiter, send, record. Also the test send (``--test-to``), which leaves no ledger
rows. ``SendContext`` is what a worker thread keeps between batches.

Error handling: throttling backs off and retries the same row (the campaign status is
re-read and, every quarter lease, the lease renewed while waiting); quota/paused/suspended pauses the
campaign with the reason and gives the rows back; a rejected message fails its row only; network trouble
retries with backoff, then fails the row. Results are recorded every ``FLUSH_EVERY`` messages or
``FLUSH_SECONDS``; in between, each message is journaled before it leaves (``journal.py``), so the
reaper knows what a SIGKILL left: sent, never attempted, or the one message in flight.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailer import urls
from mailer.observability.metrics import SendCounters, send_counters
from mailer.sending import ledger, queries
from mailer.sending.journal import ClaimWriter, Journal, make_journal
from mailer.sending.message import (
    RecipientLinks,
    RenderingLike,
    SegmentMessage,
    SenderIdentity,
    link_values,
)
from mailer.sending.models import Campaign, SegmentRendering
from mailer.sending.ratelimit import RateLimiter, make_rate_limiter
from mailer.sending.states import CampaignAction, CampaignStatus
from mailer.sending.transports import (
    AccountPausedError,
    OutgoingMessage,
    RejectedError,
    TemporaryError,
    ThrottledError,
    Transport,
    create_transport,
)
from mailer.settings import Settings
from subscribers.tokens import make_token

__all__ = ["BatchReport", "SendContext", "send_batch_stepwise", "send_test"]

log = logging.getLogger(__name__)

FLUSH_EVERY = 50  # bounds what a SIGKILL leaves sent but unrecorded; 100 measured no faster
FLUSH_SECONDS = 0.5
SEND_ATTEMPTS = 3  # tries of one message on network/server trouble before its row fails
_BACKOFF_CAP = 8.0  # network trouble
_THROTTLE_CAP = 1.0  # SES throttling is per second: waiting longer only loses time


@dataclass
class SendContext:
    """What one sending thread keeps between batches: sessions, transports and their rate limiters,
    compiled segments."""

    settings: Settings
    factory: sessionmaker[Session]
    clock: Callable[[], datetime]  # the environment's: leases it stamps are read by the reaper's clock
    identity: SenderIdentity | None = None  # None: from settings
    sleep: Callable[[float], None] = time.sleep
    _transports: dict[str, Transport] = field(default_factory=dict)
    _limiters: dict[str, RateLimiter] = field(default_factory=dict)
    _segments: dict[tuple[int, int], SegmentMessage] = field(default_factory=dict)
    _journal: Journal | None = None

    def __post_init__(self) -> None:
        if self.identity is None:
            self.identity = SenderIdentity.from_settings(self.settings)
        self.sender: SenderIdentity = self.identity

    def rate_limiter(self, transport: str) -> RateLimiter:
        """The shared limiter of a transport, at the rate the transport gives (asked once)."""
        if transport not in self._limiters:
            rate = self.transport(transport).max_rate()
            self._limiters[transport] = make_rate_limiter(self.settings, transport, rate)
        return self._limiters[transport]

    @property
    def journal(self) -> Journal:
        """Where this thread journals each send ahead of the ledger (Redis, or files in embedded mode)."""
        if self._journal is None:
            self._journal = make_journal(self.settings)
        return self._journal

    def transport(self, name: str) -> Transport:
        if name not in self._transports:
            self._transports[name] = create_transport(name, self.settings)
        return self._transports[name]

    def segment(self, session: Session, campaign: Campaign, segment_id: int) -> SegmentMessage:
        key = (campaign.id, segment_id)
        if key not in self._segments:
            if len(self._segments) > 256:
                self._segments.clear()
            rendering = session.get(SegmentRendering, segment_id)
            assert rendering is not None and rendering.campaign_id == campaign.id
            self._segments[key] = SegmentMessage(
                rendering, campaign_id=campaign.id, identity=self.sender, nonce=campaign.nonce
            )
        return self._segments[key]

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    released: int = 0
    status: str = CampaignStatus.SENDING


def send_batch_stepwise(ctx: SendContext, campaign_id: int, delivery_ids: Iterable[int]) -> BatchReport:
    """Send the still-queued rows among ``delivery_ids``, committing the claim and every record as it goes.
    Each message is journaled before it leaves (``journal``), so a crash leaves at most the message in
    flight in doubt. Safe to run twice: a second run claims nothing."""
    claim_id = secrets.token_hex(8)
    # opened before the claim: a kill right after the claim leaves a journal saying "nothing attempted"
    writer = ctx.journal.open(claim_id)
    try:
        with ctx.factory() as session:
            return _ClaimedBatch(ctx, session, campaign_id, claim_id, writer).run_stepwise(list(delivery_ids))
    finally:
        writer.abandon()  # unless closed (every outcome in the ledger), the journal stays for the reaper


class _ClaimedBatch:
    """One claim of ledger rows, from the claim to its last record: claim, then for each row build the
    message, journal the attempt, send, and record the outcomes every ``FLUSH_EVERY`` messages or
    ``FLUSH_SECONDS`` (at once after a failure); give back what was not sent."""

    def __init__(
        self, ctx: SendContext, session: Session, campaign_id: int, claim_id: str, writer: ClaimWriter
    ) -> None:
        self.ctx, self.session, self.settings = ctx, session, ctx.settings
        self.campaign_id, self.claim_id, self.writer = campaign_id, claim_id, writer
        self.report = BatchReport()
        self.held: list[int] = []  # the claimed row ids
        self.outcomes: list[ledger.Outcome] = []  # sent or failed since the last record
        self.accepted: tuple[int, str | None] | None = None  # the last row sent, not journaled as sent yet

    def run_stepwise(self, delivery_ids: list[int]) -> BatchReport:
        rows = self._claim_stepwise(delivery_ids)
        if rows:
            self._prepare(rows)
            try:
                self._send_stepwise(rows)
            except AccountPausedError as exc:
                self._pause_stepwise(exc)
            except Exception:
                self._give_back_stepwise()
                raise
            if self.report.sent + self.report.failed < len(rows):  # stopped early: give the rest back
                self.report.released = ledger.release(
                    self.session, self.campaign_id, self.claim_id, held=self.held, now=self.ctx.clock()
                )
                self.session.commit()
        self.writer.close()
        return self.report

    # --- the steps ----------------------------------------------------------------------------------
    def _claim_stepwise(self, delivery_ids: list[int]) -> list[ledger.Claimed]:
        rows, skipped = ledger.claim(
            self.session, self.campaign_id, delivery_ids, self.claim_id, now=self.ctx.clock()
        )
        self.session.commit()
        self.report.claimed, self.report.skipped = len(rows) + skipped, skipped
        if not rows and skipped:  # the campaign's last rows may all have been skipped: it may be done
            self._write([], max_consecutive_failures=1 << 30)
            self.session.commit()
            transport = queries.get_campaign(self.session, self.campaign_id).transport
            send_counters(transport).skipped.inc(skipped)
        return rows

    def _prepare(self, rows: list[ledger.Claimed]) -> None:
        campaign = queries.get_campaign(self.session, self.campaign_id)
        self.held = [row.id for row in rows]
        self.segments = {
            row.segment_id: self.ctx.segment(self.session, campaign, row.segment_id) for row in rows
        }
        self.transport = self.ctx.transport(campaign.transport)
        self.counters = send_counters(campaign.transport)
        if self.report.skipped:
            self.counters.skipped.inc(self.report.skipped)
        self.tokens = _Tokens(
            self.ctx.rate_limiter(campaign.transport), self.settings.rate_burst, self.counters
        )
        self.view_scope = urls.view_scope(self.campaign_id)
        self.issued = self.ctx.clock()  # the links' issue time: a batch takes minutes, a token lasts months
        self.last_record = self.last_renewal = time.monotonic()

    def _send_stepwise(self, rows: list[ledger.Claimed]) -> None:
        """Every row in turn; returns early when the campaign stops sending (paused, cancelled, done)."""
        last = rows[-1]
        for row in rows:
            outcome = self._deliver(row)
            if outcome is None:  # the campaign stopped while this row waited out a throttle
                return
            self.outcomes.append(outcome)
            # a failure is recorded at once, so the campaign pauses exactly at its failure limit; the last
            # row is left to the final record (one statement group, not an extra empty one)
            if row is not last and self._record_due(outcome) and not self._record_stepwise():
                return
        self._record_stepwise(final=True)

    def _deliver(self, row: ledger.Claimed) -> ledger.Outcome | None:
        """The row's outcome (a message that cannot be built fails its row alone), or None to stop."""
        try:
            message = self._message(row)
        except Exception as exc:
            ids = {"campaign_id": self.campaign_id, "delivery_id": row.id}
            log.warning("campaign %s row %s: %s", self.campaign_id, row.id, exc, extra=ids)
            error = f"the message cannot be built: {type(exc).__name__}: {exc}"
            return ledger.Outcome(row.id, False, error=error, error_code="build")
        self.writer.attempt(row.id, self.accepted)
        self.accepted = None
        outcome = _send_one(self.ctx, self.transport, self.tokens, row.id, message, self._record_stepwise)
        if outcome is not None and outcome.sent:
            self.accepted = (row.id, outcome.message_id)
        return outcome

    def _message(self, row: ledger.Claimed) -> OutgoingMessage:
        key, sid, salt, issued = self.settings.signing_key, row.subscriber_id, row.salt, self.issued
        links = RecipientLinks(
            unsubscribe=make_token(key, sid, "unsubscribe", salt=salt, now=issued),
            preferences=make_token(key, sid, "preferences", salt=salt, now=issued),
            view=make_token(key, sid, "view", salt=salt, scope=self.view_scope, now=issued),
        )
        values = link_values(self.ctx.sender, self.campaign_id, row.email, links)
        built = self.segments[row.segment_id].build(
            subscriber_id=sid, email=row.email, name=row.name, values=values
        )
        return OutgoingMessage(
            sender=self.ctx.sender.sender_address,
            recipients=(row.email,),
            raw=built.raw,
            message_id=built.message_id,
            campaign_id=self.campaign_id,
        )

    def _record_due(self, outcome: ledger.Outcome) -> bool:
        return (
            not outcome.sent
            or len(self.outcomes) >= FLUSH_EVERY
            or time.monotonic() - self.last_record >= FLUSH_SECONDS
        )

    def _record_stepwise(self, final: bool = False) -> bool:
        """Record the outcomes since the last record; True while the campaign is still sending."""
        # rewriting claimed_at of every held row at each record doubled the ledger's writes; a lease only
        # needs renewing a few times per lease time
        renew = not final and time.monotonic() - self.last_renewal >= self.settings.lease_seconds / 4
        self.report.status = self._write(
            self.outcomes,
            max_consecutive_failures=self.settings.max_consecutive_failures,
            final=final,
            renew=renew,
        )
        self.session.commit()
        self._account()
        if not final:
            self.writer.check()  # what the journal holds for the rows not recorded yet really arrived
        self.last_record = time.monotonic()
        if renew:
            self.last_renewal = self.last_record
        return self.report.status == CampaignStatus.SENDING

    def _pause_stepwise(self, exc: AccountPausedError) -> None:
        """The provider paused sending for the account: keep what was sent, pause the campaign."""
        self._write(self.outcomes, max_consecutive_failures=1 << 30)
        reason = f"paused by the provider: {exc}"
        # already paused or cancelled by someone else: nothing to change
        ledger.set_status(
            self.session, self.campaign_id, CampaignAction.PAUSE, CampaignStatus.PAUSED, status_reason=reason
        )
        self.session.commit()
        self._account()
        log.warning("campaign %s %s", self.campaign_id, reason, extra={"campaign_id": self.campaign_id})
        self.report.status = CampaignStatus.PAUSED

    def _give_back_stepwise(self) -> None:
        """A bug, a lost database, a journal that cannot be written: keep what was sent and give the rest
        back (the caller re-raises for Celery to log); if even that fails, the journal tells the reaper."""
        try:
            self.session.rollback()
            self._write(self.outcomes, max_consecutive_failures=1 << 30)
            ledger.release(
                self.session, self.campaign_id, self.claim_id, held=self.held, now=self.ctx.clock()
            )
            self.session.commit()
            self._account()
        except Exception:
            ids = {"campaign_id": self.campaign_id, "claim_id": self.claim_id}
            log.exception(
                "campaign %s: claim %s is left to the reaper and its journal", *ids.values(), extra=ids
            )
        else:
            self.writer.close()

    # --- the ledger and the counters ------------------------------------------------------------------
    def _write(
        self,
        outcomes: list[ledger.Outcome],
        *,
        max_consecutive_failures: int,
        final: bool = True,
        renew: bool = True,
    ) -> str:
        return ledger.record(
            self.session,
            self.campaign_id,
            self.claim_id,
            outcomes,
            max_consecutive_failures=max_consecutive_failures,
            held=self.held,
            final=final,
            renew=renew,
            now=self.ctx.clock(),
        )

    def _account(self) -> None:
        """Count the recorded outcomes (the report, the metrics) and start the next group."""
        sent = sum(1 for o in self.outcomes if o.sent)
        self.report.sent += sent
        self.report.failed += len(self.outcomes) - sent
        self.counters.record(sent, len(self.outcomes) - sent)
        self.outcomes.clear()


class _Tokens:
    """Takes rate-limiter tokens a few at a time at high rates (one Redis round trip per ~20 ms of sending),
    one at a time at low rates, so the bucket's accuracy is unchanged where it matters."""

    def __init__(self, limiter: RateLimiter, burst: int, counters: SendCounters) -> None:
        self.limiter = limiter
        self.counters = counters  # the transport's: waits here, the provider's throttling in _send_one
        rate = limiter.rate
        self.chunk = 0 if rate is None else max(1, min(burst, int(rate * 0.02)))
        self.credit = 0

    def take(self) -> None:
        if not self.chunk:
            return
        if self.credit == 0:
            waited = self.limiter.acquire(self.chunk)
            if waited > 0:
                self.counters.waited(waited)
            self.credit = self.chunk
        self.credit -= 1


def _send_one(
    ctx: SendContext,
    transport: Transport,
    tokens: _Tokens,
    delivery_id: int,
    message: OutgoingMessage,
    heartbeat: Callable[[], bool],
) -> ledger.Outcome | None:
    """Send one message until it has an outcome; None when the campaign stopped sending meanwhile."""
    throttled = failures = 0
    while True:
        tokens.take()
        try:
            result = transport.send(message)
            return ledger.Outcome(delivery_id, True, message_id=result.message_id)
        except ThrottledError as exc:
            throttled += 1
            tokens.counters.throttles.inc()
            delay = min(_THROTTLE_CAP, 0.1 * 2 ** min(throttled - 1, 6)) * random.uniform(0.8, 1.2)
            ids = {"campaign_id": message.campaign_id, "delivery_id": delivery_id}
            log.info("throttled (%s); retrying in %.2fs", exc, delay, extra=ids)
            if not heartbeat():  # record what we have, renew the lease, notice a pause
                return None
            ctx.sleep(delay)
        except RejectedError as exc:
            return ledger.Outcome(delivery_id, False, error=str(exc), error_code=exc.code)
        except TemporaryError as exc:
            failures += 1
            if failures >= SEND_ATTEMPTS:
                return ledger.Outcome(delivery_id, False, error=str(exc), error_code=exc.code)
            ctx.sleep(min(_BACKOFF_CAP, 0.5 * 2**failures))
        except AccountPausedError:
            raise  # the whole campaign pauses (send_batch_stepwise)
        except Exception as exc:  # anything else the transport raised about this message: its row fails
            ids = {"campaign_id": message.campaign_id, "delivery_id": delivery_id}
            log.warning("delivery %s: %s", delivery_id, exc, extra=ids)
            error = f"the transport refused the message: {type(exc).__name__}: {exc}"
            return ledger.Outcome(delivery_id, False, error=error, error_code="unexpected")


def send_test(
    ctx: SendContext,
    renderings: Mapping[frozenset[str], RenderingLike],
    addresses: Collection[str],
    *,
    transport_name: str,
) -> list[tuple[frozenset[str], str]]:
    """One message per segment to each given address, through the transport's rate limiter; no campaign,
    no ledger. The links carry a token that is not valid (``urls.SAMPLE_TOKEN``). Returns what was sent
    as (segment, address)."""
    transport = ctx.transport(transport_name)
    tokens = _Tokens(ctx.rate_limiter(transport_name), ctx.settings.rate_burst, send_counters(transport_name))
    identity = ctx.sender
    nonce = secrets.token_hex(4)
    sample = RecipientLinks(urls.SAMPLE_TOKEN, urls.SAMPLE_TOKEN, urls.SAMPLE_TOKEN)
    sent: list[tuple[frozenset[str], str]] = []
    for number, (segment, rendering) in enumerate(sorted(renderings.items(), key=lambda kv: sorted(kv[0]))):
        compiled = SegmentMessage(rendering, campaign_id=0, identity=identity, nonce=f"test{nonce}{number}")
        for address in addresses:
            built = compiled.build(
                subscriber_id=len(sent),
                email=address,
                name=None,
                values=link_values(identity, 0, address, sample),
            )
            tokens.take()
            transport.send(OutgoingMessage(identity.sender_address, (address,), built.raw, built.message_id))
            sent.append((segment, address))
    return sent
