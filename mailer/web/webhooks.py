"""``POST /webhooks/ses`` (NEWSLETTER_WEBHOOK_PATH): SES bounces and complaints delivered by SNS over HTTP.

Every message is verified (signature v1/v2, certificate URL and subject, topic allow-list, age) before
anything is stored or fetched; the ``x-amz-sns-message-type`` header must name the body's ``Type``. A
notification is stored raw (its MessageId unique) and applied in one transaction before the 2xx leaves;
SNS delivers at least once, and a second delivery changes nothing. A database that cannot be reached
answers 503, so SNS retries and nothing is lost. A verified SubscriptionConfirmation is confirmed by
visiting its SubscribeURL, on an SNS host only.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from mailer.errors import InputError, VerificationError
from mailer.feedback.results import FeedbackResult, UnusablePayload
from mailer.feedback.sns import NOTIFICATION, SUBSCRIPTION_CONFIRMATION, SnsVerifier, parse_sns_message
from mailer.feedback.sns_hosts import confirm_subscription
from mailer.observability.metrics import count_webhook_message
from mailer.services import feedback
from mailer.services.env import AppEnv
from mailer.services.feedback import FeedbackWriter
from mailer.web.deps import app_env

__all__ = ["make_router"]

log = logging.getLogger("mailer.web.webhooks")


# The route reads its header and body itself (FastAPI's parameter machinery cost a tenth of a
# notification's CPU on the event loop); the schema documents both as before.
_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "x-amz-sns-message-type",
            "in": "header",
            "required": False,
            "description": "SNS's name of the message type; must equal Type",
            "schema": {"type": "string"},
        }
    ],
    "requestBody": {
        "required": True,
        "description": "the SNS message, JSON, exactly as SNS signed it",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
}


def _answer(code: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=code)


def make_router(path: str) -> APIRouter:
    router = APIRouter(tags=["webhooks"])

    @router.post(
        path,
        summary="SES notifications delivered by Amazon SNS",
        responses={400: {"description": "malformed"}, 403: {"description": "not verified"}},
        openapi_extra=_OPENAPI,
    )
    async def ses_webhook(request: Request) -> JSONResponse:
        # async, unlike the other routes: a notification waits for the writer's group commit without
        # holding a thread (a thread per waiting request would cap a group at the pool's size); whatever
        # may block (a certificate fetch, the database) runs in the thread pool or the writer thread
        message_type = request.headers.get("x-amz-sns-message-type")
        client = request.client.host if request.client else "?"
        if message_type is None:
            count_webhook_message(None, "malformed")
            log.warning("webhook: refused a message from %s: no x-amz-sns-message-type header", client)
            return _answer(400, error="invalid_input", detail="missing header x-amz-sns-message-type")
        env = app_env(request)
        body = await request.body()
        verifier: SnsVerifier = request.app.state.sns_verifier
        now = env.now()
        try:
            message = parse_sns_message(body, message_type_header=message_type)
            if not verifier.verify_held(message, now=now):  # no I/O: verified here, when it can be
                # the certificate must be fetched (blocking): in threads of their own, so messages
                # naming slow or new URLs never take the event loop nor the threads the pages need
                verify = functools.partial(verifier.verify, message, now=now)
                await anyio.to_thread.run_sync(verify, limiter=request.app.state.fetch_limiter)
        except VerificationError as exc:
            count_webhook_message(message_type, "refused")
            log.warning("webhook: refused a message from %s: %s", client, _printable(exc))
            return _answer(403, error="unverified", detail="the message could not be verified")
        except InputError as exc:
            count_webhook_message(message_type, "malformed")
            log.warning("webhook: refused a malformed message from %s: %s", client, _printable(exc))
            return _answer(400, error="invalid_input", detail=str(exc))
        count_webhook_message(message.type, "verified")
        if message.type != NOTIFICATION:
            return await run_in_threadpool(_confirmation, env, body, verifier, message_type)
        writer: FeedbackWriter = request.app.state.feedback_writer
        try:  # stored and applied with whatever else is arriving
            result = await asyncio.wait_for(writer.submit(message), writer.timeout)
        except UnusablePayload as exc:  # verified and stored, but no SES notification: nothing to apply
            log.warning(
                "webhook: a verified message from %s holds no SES notification: %s", client, _printable(exc)
            )
            return _answer(200, status="ignored", detail=str(exc))
        except TimeoutError:
            log.error(
                "webhook: the database took too long; SNS delivers %s again", _printable(message.message_id)
            )
            return _answer(503, error="unavailable", detail="try again")
        if log.isEnabledFor(logging.INFO):
            ids = _log_ids(result)
            for line in result.lines():
                log.info("webhook: %s", _printable(line), extra=ids)
        return _answer(
            200,
            status="duplicate" if result.duplicate else "applied",
            message_id=result.key,
            changes=sum(1 for c in result.changes if c.changed),
        )

    return router


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


def _confirmation(env: AppEnv, body: bytes, verifier: SnsVerifier, message_type: str) -> JSONResponse:
    """A SubscriptionConfirmation or UnsubscribeConfirmation: stored, and a subscription confirmed by
    visiting its SubscribeURL (an SNS host only), unless the settings say to log it instead."""
    result = feedback.receive(env, body, verify=verifier, message_type_header=message_type)
    if result.kind != SUBSCRIPTION_CONFIRMATION or not result.subscribe_url:
        log.info("webhook: %s for %s", result.kind, _printable(result.topic_arn))
        return _answer(200, status="logged", message_id=result.key)
    if not env.settings.sns_confirm_subscriptions:
        log.warning(
            "webhook: topic %s asks to be confirmed: open %s",
            _printable(result.topic_arn),
            _printable(result.subscribe_url),
        )
        return _answer(200, status="confirmation_logged", message_id=result.key)
    try:
        confirm_subscription(result.subscribe_url)
    except VerificationError as exc:
        log.error(
            "webhook: could not confirm the subscription of %s: %s",
            _printable(result.topic_arn),
            _printable(exc),
        )
        return _answer(502, error="confirmation_failed", detail="the subscription could not be confirmed")
    log.info("webhook: confirmed the subscription to %s", _printable(result.topic_arn))
    return _answer(200, status="subscription_confirmed", message_id=result.key)
