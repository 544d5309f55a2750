"""SES feedback (bounces, complaints) arriving through SNS: verify with the settings' rules, store once,
apply. The CLI's ``feedback apply`` calls ``receive``; the web app hands each POST of its webhook to an
``SnsWebhook`` (one per process), which answers with one ``WebhookReply``.

The webhook's flow, on the web process's event loop: parse the message and verify it when that needs no
I/O (its certificate is cached, or failed to be fetched a moment ago); anything that may block runs
elsewhere: a certificate fetch, and a confirmation's storage and SubscribeURL visit, in the webhook's own
bounded fetch threads (never the event loop, never the threads the pages need); a notification's store
and apply in the ``FeedbackWriter``'s group commit, waited for without holding a thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from mailer.errors import InputError, VerificationError
from mailer.feedback.apply import (
    SKIP_VERIFICATION,
    Verification,
    receive_stepwise,
    store_confirmation_stepwise,
)
from mailer.feedback.results import FeedbackResult, UnusablePayload
from mailer.feedback.sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    SnsMessage,
    SnsVerifier,
    parse_sns_message,
)
from mailer.feedback.sns_hosts import (
    CachedCertificates,
    CertificateDirectory,
    SnsSignatureError,
    confirm_subscription,
    fetch_certificate_https,
    sns_regions,
)
from mailer.observability.metrics import count_feedback, count_webhook_message
from mailer.sending.health import HealthLimits
from mailer.services.env import AppEnv
from mailer.services.feedback_writer import FeedbackWriter

__all__ = ["Outcome", "SnsWebhook", "WebhookReply", "receive", "verifier"]

# the webhook's lines keep the logger they have always had: operators filter on it
log = logging.getLogger("mailer.web.webhooks")
_T = TypeVar("_T")


def verifier(
    env: AppEnv, *, cert_dir: Path | None = None, pinned: Mapping[str, bytes] | None = None
) -> SnsVerifier:
    """SNS verification by the settings: topic allow-list, message age, certificate dates; certificates
    read from ``cert_dir`` (else NEWSLETTER_SNS_CERT_DIR), else fetched over HTTPS, cached either way.
    ``pinned`` (URL -> PEM) replaces every source: only those certificates, nothing read or fetched (the
    demo's certificate, made for one run; no setting can pin one)."""
    settings = env.settings
    folder = cert_dir or settings.sns_cert_dir
    fetch: Callable[[str], bytes] = CertificateDirectory(folder) if folder else fetch_certificate_https
    if pinned is not None:
        fetch = _only(pinned)
    max_age = settings.sns_max_age_seconds
    return SnsVerifier(
        CachedCertificates(fetch),
        max_age=dt.timedelta(seconds=max_age) if max_age > 0 else None,
        check_validity=settings.sns_check_certificate_dates,
        topic_arns=frozenset(settings.sns_topic_arns),
    )


def _only(pinned: Mapping[str, bytes]) -> Callable[[str], bytes]:
    held = dict(pinned)

    def fetch(url: str) -> bytes:
        try:
            return held[url]
        except KeyError:
            raise SnsSignatureError(f"SNS message: {url} is not a certificate this verifier trusts") from None

    return fetch


def receive(
    env: AppEnv,
    body: str | bytes | Mapping[str, Any],
    *,
    verify: Verification | None = None,
    trust_unsigned: bool = False,
    as_of: dt.datetime | None = None,
    message_type_header: str | None = None,
) -> FeedbackResult:
    """Verify (``verify``, default: ``verifier(env)``; ``trust_unsigned`` applies a bare SES notification
    generated locally, unverified), store once and apply one feedback message; commits."""
    check: Verification = SKIP_VERIFICATION if trust_unsigned else (verify or verifier(env))
    result = receive_stepwise(
        body,
        sessions=env.sessions,
        verifier=check,
        now=as_of or env.now(),
        soft_bounce_limit=env.settings.soft_bounce_limit,
        message_type_header=message_type_header,
        health=HealthLimits.from_settings(env.settings),
    )
    count_feedback(result.events, duplicate=result.duplicate)
    return result


class Outcome(StrEnum):
    """What became of one message at the webhook; the web side gives each its HTTP status."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # stored before: nothing changed
    IGNORED = "ignored"  # verified and kept, but no SES notification we read: a retry cannot help
    LOGGED = "logged"  # an UnsubscribeConfirmation: stored and logged
    CONFIRMATION_LOGGED = "confirmation_logged"  # NEWSLETTER_SNS_CONFIRM_SUBSCRIPTIONS=false
    SUBSCRIPTION_CONFIRMED = "subscription_confirmed"
    INVALID_INPUT = "invalid_input"  # malformed: no x-amz-sns-message-type, not an SNS message
    UNVERIFIED = "unverified"  # signature, certificate, topic or age
    UNAVAILABLE = "unavailable"  # the database did not answer in time: SNS delivers it again
    CONFIRMATION_FAILED = "confirmation_failed"  # the SubscribeURL could not be visited


REFUSALS = frozenset(
    {Outcome.INVALID_INPUT, Outcome.UNVERIFIED, Outcome.UNAVAILABLE, Outcome.CONFIRMATION_FAILED}
)


@dataclass(frozen=True)
class WebhookReply:
    outcome: Outcome
    message_id: str | None = None  # the SNS MessageId of a message verified
    changes: int | None = None  # of a notification applied: how many actions changed something
    detail: str | None = None  # why, in one line

    def body(self) -> dict[str, Any]:
        """The JSON answer: ``{"error": ..., "detail": ...}`` for a refusal, else ``{"status": ...}`` with
        what is known."""
        body: dict[str, Any] = {"error" if self.outcome in REFUSALS else "status": self.outcome}
        if self.message_id is not None:
            body["message_id"] = self.message_id
        if self.changes is not None:
            body["changes"] = self.changes
        if self.detail is not None:
            body["detail"] = self.detail
        return body


class SnsWebhook:
    """The SNS webhook of one web process: ``await receive(body, message_type, client=...)`` verifies a
    message (SignatureVersion 1 and 2, certificate, topic, age; the ``x-amz-sns-message-type`` header
    must name its Type), then stores and applies a notification in the writer's group commit, or stores
    a confirmation and visits its SubscribeURL. Nothing is stored for a message that fails, and nothing
    fetched for one whose topic, certificate URL or age fails. Errors of a database that cannot answer
    are raised (the web side answers 503: SNS delivers again)."""

    def __init__(
        self, env: AppEnv, *, fetch_threads: int = 2, verification: SnsVerifier | None = None
    ) -> None:
        self.env = env
        self.verifier = verification or verifier(env)
        sns_regions()  # botocore's endpoint data, read now rather than by the first message, on the loop
        self.writer = FeedbackWriter(env)
        self._fetches = ThreadPoolExecutor(fetch_threads, thread_name_prefix="sns-fetch")

    def close(self) -> None:
        self.writer.close()
        self._fetches.shutdown(wait=False, cancel_futures=True)

    async def receive(self, body: bytes, message_type: str | None, *, client: str) -> WebhookReply:
        """One POST of SNS: its raw body and its ``x-amz-sns-message-type`` header; ``client`` names
        the sender in log lines. Runs on the event loop and never blocks it."""
        if message_type is None:
            count_webhook_message(None, "malformed")
            log.warning("webhook: refused a message from %s: no x-amz-sns-message-type header", client)
            return WebhookReply(Outcome.INVALID_INPUT, detail="missing header x-amz-sns-message-type")
        try:
            message = await self._verified(body, message_type)
        except VerificationError as exc:
            count_webhook_message(message_type, "refused")
            log.warning("webhook: refused a message from %s: %s", client, _printable(exc))
            return WebhookReply(Outcome.UNVERIFIED, detail="the message could not be verified")
        except InputError as exc:
            count_webhook_message(message_type, "malformed")
            log.warning("webhook: refused a malformed message from %s: %s", client, _printable(exc))
            return WebhookReply(Outcome.INVALID_INPUT, detail=str(exc))
        count_webhook_message(message.type, "verified")
        if message.type != NOTIFICATION:
            return await self._off_the_loop(self._confirmation_stepwise, message)
        return await self._applied(message, client)

    async def _verified(self, body: bytes, message_type: str) -> SnsMessage:
        """The message parsed and verified: here when that needs no I/O (the certificate is held),
        else in the fetch threads. Where it runs is decided from the parsed message, as verified."""
        now = self.env.now()
        message = parse_sns_message(body, message_type_header=message_type)
        if not self.verifier.verify_held(message, now=now):
            await self._off_the_loop(functools.partial(self.verifier.verify, message, now=now))
        return message

    async def _off_the_loop(self, work: Callable[..., _T], *args: Any) -> _T:
        """``work(*args)`` in the fetch threads (at most ``fetch_threads`` at once; others wait their
        turn without holding a thread)."""
        return await asyncio.get_running_loop().run_in_executor(self._fetches, work, *args)

    async def _applied(self, message: SnsMessage, client: str) -> WebhookReply:
        """A verified notification stored and applied with whatever else is arriving."""
        try:
            result = await asyncio.wait_for(self.writer.submit(message), self.writer.timeout)
        except UnusablePayload as exc:  # kept, but no SES notification: nothing to apply
            log.warning(
                "webhook: a verified message from %s holds no SES notification: %s", client, _printable(exc)
            )
            return WebhookReply(Outcome.IGNORED, detail=str(exc))
        except InputError as exc:  # the database refused this message alone (a retry cannot help)
            log.warning("webhook: a verified message from %s cannot be stored: %s", client, _printable(exc))
            return WebhookReply(Outcome.INVALID_INPUT, detail=str(exc))
        except TimeoutError:
            log.error(
                "webhook: the database took too long; SNS delivers %s again", _printable(message.message_id)
            )
            return WebhookReply(Outcome.UNAVAILABLE, detail="try again")
        if log.isEnabledFor(logging.INFO):
            ids = _log_ids(result)
            for line in result.lines():
                log.info("webhook: %s", _printable(line), extra=ids)
        return WebhookReply(
            Outcome.DUPLICATE if result.duplicate else Outcome.APPLIED,
            message_id=result.key,
            changes=sum(1 for c in result.changes if c.changed),
        )

    def _confirmation_stepwise(self, message: SnsMessage) -> WebhookReply:
        """A verified SubscriptionConfirmation or UnsubscribeConfirmation, in a fetch thread: stored, and
        a subscription confirmed by visiting its SubscribeURL (an SNS host only), unless the settings say
        to log the URL instead."""
        result = store_confirmation_stepwise(message, sessions=self.env.sessions, now=self.env.now())
        topic = _printable(result.topic_arn)
        if result.kind != SUBSCRIPTION_CONFIRMATION or not result.subscribe_url:
            log.info("webhook: %s for %s", result.kind, topic)
            return WebhookReply(Outcome.LOGGED, message_id=result.key)
        if not self.env.settings.sns_confirm_subscriptions:
            log.warning(
                "webhook: topic %s asks to be confirmed: open %s", topic, _printable(result.subscribe_url)
            )
            return WebhookReply(Outcome.CONFIRMATION_LOGGED, message_id=result.key)
        try:
            confirm_subscription(result.subscribe_url)
        except VerificationError as exc:
            log.error("webhook: could not confirm the subscription of %s: %s", topic, _printable(exc))
            return WebhookReply(Outcome.CONFIRMATION_FAILED, detail="the subscription could not be confirmed")
        log.info("webhook: confirmed the subscription to %s", topic)
        return WebhookReply(Outcome.SUBSCRIPTION_CONFIRMED, message_id=result.key)


def _log_ids(result: FeedbackResult) -> dict[str, Any]:
    """The ids a notification's log lines carry (JSON logs): its SNS MessageId, and the SES message id and
    campaign of its events when they name one."""
    ids: dict[str, Any] = {"sns_message_id": result.key}
    message_ids = {event.message_id for event in result.events if event.message_id}
    campaigns = {c for c in (getattr(event, "campaign", None) for event in result.events) if c}
    if len(message_ids) == 1:
        ids["message_id"] = message_ids.pop()
    if len(campaigns) == 1:
        campaign = campaigns.pop()
        ids["campaign_id"] = int(campaign) if campaign.isdigit() else campaign
    return ids


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: object) -> str:
    """A value for a log line: control characters escaped, so a field of a message cannot forge lines."""
    return _CONTROL_RE.sub(lambda m: repr(m.group(0))[1:-1], str(value))
