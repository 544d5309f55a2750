"""The admin dashboard (/admin/): campaigns with live progress bars, a campaign page with its segments side
by side at 600 and 375 px, the pre-send checklist and the start/pause/resume/cancel buttons (each behind a
confirmation page), charts drawn on the server, subscribers per topic and their growth, the suppression
list. Pages in templates/web/admin/, zh and en; the only script is static/admin.js (the progress bars poll
/api/campaigns/{id}/progress with the session cookie, a GET). Every form carries the session's CSRF token
and is refused from another site."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mailer.sending.states import CampaignAction
from mailer.services import admins, campaign_desk, lifecycle, listing, subscribers
from mailer.web.admin import charts
from mailer.web.admin.auth import (
    HOME,
    PageAdmin,
    admin_keys,
    csrf_ok,
    end_session,
    safe_next,
    start_session,
)
from mailer.web.deps import DbSession, Env, PageRenderer, ReadSession, client_ip, same_site
from mailer.web.security import check_form_token, form_token

router = APIRouter(prefix="/admin", include_in_schema=False)
log = logging.getLogger(__name__)

ADMIN_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
CampaignId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ACTIONS = {a.value: a for a in (CampaignAction.START, CampaignAction.PAUSE, CampaignAction.RESUME,
                                CampaignAction.CANCEL)}  # fmt: skip


def _page(
    pages: PageRenderer, request: Request, name: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    lang = pages.lang_for(request)
    return pages.page(
        f"admin/{name}",
        lang,
        status_code=status_code,
        headers={"content-security-policy": ADMIN_CSP},
        **context,
    )


def _back(url: str) -> RedirectResponse:
    """After a form: on to a page, at a link of the URL contract (env.urls)."""
    return RedirectResponse(url, status_code=303)


# --- login ---------------------------------------------------------------------------------------------
@router.get("/login")
def login_page(
    request: Request,
    env: Env,
    pages: PageRenderer,
    next: Annotated[str | None, Query(max_length=4000)] = None,
) -> HTMLResponse:
    token = form_token(admin_keys(env), "admin-login")
    return _page(pages, request, "login.html", csrf=token, next=safe_next(next), failed=False)


@router.post("/login", response_model=None)
def login(
    request: Request,
    env: Env,
    pages: PageRenderer,
    session: DbSession,
    name: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf: Annotated[str, Form(max_length=64)],
    next: Annotated[str, Form(max_length=4000)] = HOME,
) -> Response:
    same_site(request, env)
    if not check_form_token(admin_keys(env), "admin-login", "", csrf):
        raise HTTPException(403, "this form has expired or is not ours; open the page again")
    by_ip, by_name = request.app.state.login_limiter, request.app.state.login_name_limiter
    ip, who = client_ip(request), name.strip().lower()[:64]
    # failures count, per client address and per name from anywhere: the name's limit is ten times
    # higher, so guessing one password from many addresses is slow while locking its admin out is hard
    if by_ip.reached(ip, "login-failed") or by_name.reached(who, "login-failed-name"):
        log.warning("admin login refused: too many failed attempts (client %s)", ip)
        raise HTTPException(
            429, "too many failed logins; try again in 15 minutes", headers={"retry-after": "900"}
        )
    admin = admins.authenticate(session, name, password)
    if admin is None:
        by_ip.allow(ip, "login-failed")
        by_name.allow(who, "login-failed-name")
        log.warning("admin login failed for a name from client %s", ip)
        token = form_token(admin_keys(env), "admin-login")
        return _page(
            pages, request, "login.html", status_code=401, csrf=token, next=safe_next(next), failed=True
        )
    response = _back(env.urls.at(safe_next(next)))
    start_session(env, response, admin, admins.login_fingerprint(session, admin))
    log.info("admin %s logged in", admin.name)
    return response


@router.post("/logout")
def logout(
    request: Request,
    env: Env,
    session: DbSession,
    page: PageAdmin,
    csrf: Annotated[str, Form(max_length=64)],
) -> RedirectResponse:
    same_site(request, env)
    csrf_ok(env, page, csrf)
    admins.end_sessions(session, page.admin)  # the cookie stops working wherever a copy of it is
    response = _back(env.urls.admin_login())
    end_session(response)
    return response


# --- campaigns -----------------------------------------------------------------------------------------
@router.get("")
def bare(env: Env) -> RedirectResponse:
    return _back(env.urls.admin())


@router.get("/")
def home(
    request: Request,
    env: Env,
    pages: PageRenderer,
    session: ReadSession,
    page: PageAdmin,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> HTMLResponse:
    rows = listing.list_campaigns(session, before_id=before, limit=20)
    series = campaign_desk.activity(session, now=env.now())
    words = pages.words[pages.lang_for(request)]
    chart = charts.line_chart(
        series.starts,
        series.values,
        labels={
            "sent": words["admin_sent"],
            "bounced": words["admin_bounced"],
            "complained": words["admin_complained"],
        },  # fmt: skip
        title=words["admin_activity"],
    )
    return _page(pages, request, "campaigns.html", admin=page, rows=rows, chart=chart,
                 next_before=rows[-1].id if len(rows) == 20 else None)  # fmt: skip


@router.post("/campaigns")
async def upload(request: Request, env: Env, session: DbSession, page: PageAdmin) -> RedirectResponse:
    same_site(request, env)
    form = await request.form(max_files=1, max_fields=10)
    csrf_ok(env, page, _text(form.get("csrf")))
    upload = form.get("issue")
    if upload is None or isinstance(upload, str):
        raise HTTPException(400, "choose an issue file (Markdown) to upload")
    content = await upload.read(campaign_desk.MAX_ISSUE_BYTES + 1)
    filename = upload.filename or "issue.md"
    audience = _text(form.get("audience")) or "subscribers"

    done = await run_in_threadpool(campaign_desk.upload, session, env, content, filename, audience=audience)
    log.info("%s uploaded %s as campaign %d", page.admin.name, filename, done.campaign.id)
    return _back(env.urls.admin_campaign(done.campaign.id))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    campaign_id: CampaignId,
    request: Request,
    env: Env,
    pages: PageRenderer,
    session: ReadSession,
    page: PageAdmin,
) -> HTMLResponse:
    found = listing.detail(session, campaign_id, now=env.now())
    # a started campaign shows the segments it rendered and stored; a draft, what a start would render now
    plan = campaign_desk.checklist(env, campaign_id) if not found.segments else None
    segments = found.segments or (plan.segments if plan else ())
    live = campaign_desk.live_progress(session, env, campaign_id)
    sends = campaign_desk.campaign_sends(session, campaign_id, now=env.now())
    words = pages.words[pages.lang_for(request)]
    chart = charts.line_chart(
        sends.starts, sends.values, labels={"sent": words["admin_sent"]}, title=words["admin_per_minute"],
        time_format="%H:%M",
    )  # fmt: skip
    return _page(
        pages, request, "campaign.html", admin=page, campaign=found.info, live=live, plan=plan,
        segments=segments, failures=found.failures_by_code, chart=chart,
    )  # fmt: skip


@router.get("/campaigns/{campaign_id}/{action}")
def confirm_action(
    campaign_id: CampaignId,
    action: str,
    request: Request,
    env: Env,
    pages: PageRenderer,
    session: ReadSession,
    page: PageAdmin,
) -> HTMLResponse:
    if action not in ACTIONS:
        raise HTTPException(404, "no such action")
    info = listing.detail(session, campaign_id, now=env.now()).info
    plan = campaign_desk.checklist(env, campaign_id) if action == CampaignAction.START else None
    return _page(pages, request, "confirm.html", admin=page, campaign=info, action=action, plan=plan)


@router.post("/campaigns/{campaign_id}/{action}")
def do_action(
    campaign_id: CampaignId,
    action: str,
    request: Request,
    env: Env,
    session: DbSession,
    page: PageAdmin,
    csrf: Annotated[str, Form(max_length=64)],
    override: Annotated[bool, Form()] = False,
) -> RedirectResponse:
    same_site(request, env)
    csrf_ok(env, page, csrf)
    if action not in ACTIONS:
        raise HTTPException(404, "no such action")
    who = page.admin.name
    if action == CampaignAction.START:
        campaign_desk.start_checked(env, campaign_id, override=override)
    elif action == CampaignAction.RESUME:
        campaign_desk.resume_stepwise(env, campaign_id)
    elif action == CampaignAction.PAUSE:
        lifecycle.pause(session, campaign_id, f"paused by {who}")
    else:
        lifecycle.cancel(session, campaign_id, f"cancelled by {who}")
    log.info("%s: %s campaign %d", who, action, campaign_id, extra={"campaign_id": campaign_id})
    return _back(env.urls.admin_campaign(campaign_id))


# --- subscribers and suppressions ----------------------------------------------------------------------
@router.get("/subscribers")
def subscribers_page(
    request: Request,
    env: Env,
    pages: PageRenderer,
    session: ReadSession,
    page: PageAdmin,
    q: Annotated[str | None, Query(max_length=320)] = None,
) -> HTMLResponse:
    stats = subscribers.statistics(session)
    words = pages.words[pages.lang_for(request)]
    by_topic = sorted(stats.by_topic.items(), key=lambda kv: (-kv[1], kv[0]))
    topics_chart = charts.bar_chart(by_topic, title=words["admin_per_topic"])
    grown = campaign_desk.growth(session, now=env.now())
    growth_chart = charts.line_chart(
        grown.starts,
        grown.values,
        labels={"subscribers": words["admin_subscribers"]},
        title=words["admin_growth"],
    )
    found = subscribers.search(session, q, limit=50) if q and q.strip() else None
    return _page(pages, request, "subscribers.html", admin=page, stats=stats, topics_chart=topics_chart,
                 growth_chart=growth_chart, q=q or "", found=found)  # fmt: skip


@router.get("/suppressions")
def suppressions_page(
    request: Request,
    pages: PageRenderer,
    session: ReadSession,
    page: PageAdmin,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> HTMLResponse:
    rows = subscribers.suppressions(session, before_id=before, limit=100)
    return _page(pages, request, "suppressions.html", admin=page, rows=rows,
                 next_before=rows[-1].id if len(rows) == 100 else None)  # fmt: skip


@router.post("/suppressions/remove")
def remove_suppression(
    request: Request,
    env: Env,
    session: DbSession,
    page: PageAdmin,
    email: Annotated[str, Form(max_length=320)],
    reason: Annotated[str, Form(max_length=500)],
    csrf: Annotated[str, Form(max_length=64)],
) -> RedirectResponse:
    same_site(request, env)
    csrf_ok(env, page, csrf)
    subscribers.unsuppress(session, env, email, reason=reason, admin=page.admin.name)
    log.warning("%s took %s off the suppression list: %s", page.admin.name, email, " ".join(reason.split()))
    return _back(env.urls.admin_suppressions())
