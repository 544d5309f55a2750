"""``POST /webhooks/ses`` (NEWSLETTER_WEBHOOK_PATH): SES bounces and complaints delivered by SNS over HTTP.

The route hands the raw body and the ``x-amz-sns-message-type`` header to the process's
``mailer.services.feedback.SnsWebhook`` (verify, store once, apply; confirm a subscription) and answers
its one outcome with that outcome's status. A database that cannot be reached raises, and the app's
error handlers answer 503, so SNS retries and nothing is lost.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mailer.services.feedback import Outcome, SnsWebhook

__all__ = ["make_router"]

STATUS = {
    Outcome.APPLIED: 200,
    Outcome.DUPLICATE: 200,
    Outcome.IGNORED: 200,  # authentic, but no SES notification: SNS must not send it again
    Outcome.LOGGED: 200,
    Outcome.CONFIRMATION_LOGGED: 200,
    Outcome.SUBSCRIPTION_CONFIRMED: 200,
    Outcome.INVALID_INPUT: 400,
    Outcome.UNVERIFIED: 403,
    Outcome.CONFIRMATION_FAILED: 502,  # SNS sends the confirmation again
    Outcome.UNAVAILABLE: 503,  # SNS delivers it again
}

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
        # holding a thread; SnsWebhook runs whatever may block elsewhere (see its module)
        webhook: SnsWebhook = request.app.state.sns_webhook
        reply = await webhook.receive(
            await request.body(),
            request.headers.get("x-amz-sns-message-type"),
            client=request.client.host if request.client else "?",
        )
        return JSONResponse(reply.body(), status_code=STATUS[reply.outcome])

    return router
