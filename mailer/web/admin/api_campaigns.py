"""Admin API: campaigns. Upload an issue as a draft, its segments and pre-send checklist, previews, test
sends, schedule/start/pause/resume/cancel and live progress. Every route needs an admin (auth.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from mailer.services import campaign_desk, drafts, lifecycle, listing
from mailer.web.admin import schemas
from mailer.web.admin.auth import BEARER, UNAUTHORIZED, ApiAdmin, api_admin
from mailer.web.admin.bodies import read_body
from mailer.web.deps import DbSession, Env, ReadSession, app_env, read_only
from mailer.web.security import EMAIL_PAGE_CSP

router = APIRouter(prefix="/api/campaigns", tags=["admin: campaigns"], responses=UNAUTHORIZED)

CampaignId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("", summary="Campaigns, newest first")
def list_campaigns(
    admin: ApiAdmin,
    session: ReadSession,
    status: Annotated[str | None, Query(max_length=16)] = None,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[schemas.Campaign]:
    rows = listing.list_campaigns(session, status=status, before_id=before, limit=limit)
    return [schemas.Campaign.of(c) for c in rows]


@router.post(
    "",
    status_code=201,
    summary="Upload an issue (the request body: its Markdown) as a draft campaign",
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/markdown": {"schema": {"type": "string"}}}}
    },
)
async def upload(
    request: Request,
    admin: ApiAdmin,
    env: Env,
    session: DbSession,
    filename: Annotated[str, Query(max_length=200)] = "issue.md",
    audience: Annotated[str, Query(max_length=16)] = "subscribers",
    transport: Annotated[str | None, Query(max_length=16)] = None,
) -> schemas.Uploaded:
    content = await read_body(request, campaign_desk.MAX_ISSUE_BYTES)

    done = await run_in_threadpool(
        campaign_desk.upload, session, env, content, filename, audience=audience, transport=transport
    )
    return schemas.Uploaded(campaign=schemas.Campaign.of(done.campaign), warnings=list(done.warnings))


@router.get("/{campaign_id}", summary="One campaign")
def show(campaign_id: CampaignId, admin: ApiAdmin, env: Env, session: ReadSession) -> schemas.Campaign:
    return schemas.Campaign.of(listing.detail(session, campaign_id, now=env.now()).info)


@router.get(
    "/{campaign_id}/checklist",
    summary="The pre-send checklist, with the audience per segment (topic combination and its readers)",
)
def checklist(campaign_id: CampaignId, admin: ApiAdmin, env: Env) -> schemas.Checklist:
    return schemas.Checklist.of(campaign_id, campaign_desk.checklist(env, campaign_id))


@router.get(
    "/{campaign_id}/preview",
    responses={200: {"content": {"text/html": {}, "text/plain": {}}}},
    summary="One segment's email as its readers get it (links carry a sample token that acts on nobody)",
    response_class=HTMLResponse,
    response_model=None,
)
def preview(
    campaign_id: CampaignId,
    admin: ApiAdmin,
    env: Env,
    segment: Annotated[str, Query(max_length=2000, description="Topic keys, comma-joined; 'general'")] = "",
    format: Annotated[str, Query(pattern="^(html|text)$")] = "html",
) -> HTMLResponse | PlainTextResponse:
    body = campaign_desk.segment_preview(env, campaign_id, campaign_desk.parse_segment(segment), format)
    if format == "text":
        return PlainTextResponse(body)
    # the email's own styles are inline and in <style>: the page policy of an email, framed by our pages
    return HTMLResponse(body, headers={"content-security-policy": EMAIL_PAGE_CSP})


@router.post("/{campaign_id}/test", summary="Send each segment to given addresses")
def test_send(
    campaign_id: CampaignId, body: schemas.TestSendRequest, admin: ApiAdmin, env: Env
) -> schemas.TestSent:
    sent = drafts.send_test(env, campaign_desk.stored_draft(env, campaign_id), body.addresses)
    return schemas.TestSent(
        sent=[{"segment": ",".join(sorted(seg)) or "general", "address": address} for seg, address in sent]
    )


@router.post(
    "/{campaign_id}/schedule",
    responses={409: {"description": "The checklist fails (no override), or not a draft"}},
    summary="Start it at a given time (within a year), once the pre-send checklist passes (or with override)",
)
def schedule(
    campaign_id: CampaignId, body: schemas.ScheduleRequest, admin: ApiAdmin, env: Env, session: DbSession
) -> schemas.Campaign:
    info = lifecycle.schedule(session, env, campaign_id, body.at, override=body.override)
    return schemas.Campaign.of(info)


@router.post(
    "/{campaign_id}/start",
    status_code=202,
    responses={409: {"description": "The checklist fails (no override), or not startable"}},
    summary="Start sending now, once the pre-send checklist passes (or with override)",
)
def start(
    campaign_id: CampaignId, admin: ApiAdmin, env: Env, body: schemas.StartRequest | None = None
) -> schemas.Checklist:
    plan = campaign_desk.start_checked(env, campaign_id, override=bool(body and body.override))
    return schemas.Checklist.of(campaign_id, plan)


@router.post("/{campaign_id}/pause", summary="Pause sending")
def pause(campaign_id: CampaignId, admin: ApiAdmin, session: DbSession) -> schemas.Campaign:
    return schemas.Campaign.of(lifecycle.pause(session, campaign_id, f"paused by {admin.name}"))


@router.post("/{campaign_id}/resume", status_code=202, summary="Resume a paused one")
def resume(campaign_id: CampaignId, admin: ApiAdmin, env: Env) -> schemas.Campaign:
    campaign_desk.resume_stepwise(env, campaign_id)
    with env.sessions() as session:
        return schemas.Campaign.of(listing.detail(session, campaign_id, now=env.now()).info)


@router.post("/{campaign_id}/cancel", summary="Cancel: nothing more is sent")
def cancel(campaign_id: CampaignId, admin: ApiAdmin, env: Env, session: DbSession) -> schemas.Campaign:
    lifecycle.cancel(session, campaign_id, f"cancelled by {admin.name}")
    session.flush()
    return schemas.Campaign.of(listing.detail(session, campaign_id, now=env.now()).info)


@router.get(
    "/{campaign_id}/progress",
    summary="Counts by status, rate, ETA, bounce and complaint rates, per segment too (poll it)",
    dependencies=[BEARER],
)
def progress(campaign_id: CampaignId, request: Request) -> schemas.ProgressOut:
    # polled every second by every open dashboard while a campaign sends: authentication and the reads
    # run in this one thread, on a read-only connection, without dependencies that cost a hand-off each
    env = app_env(request)
    api_admin(request, env)
    with read_only(env) as session:
        return schemas.ProgressOut.of(campaign_desk.live_progress(session, env, campaign_id))
