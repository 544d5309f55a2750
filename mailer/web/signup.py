"""Signing up: ``GET/POST /subscribe`` (address, topics, language; a honeypot field) starts double opt-in
and emails the confirmation; ``GET /confirm/{token}`` shows a button and ``POST`` activates (scanners
prefetch confirmation links too). Every address gets the same answer, known or not; clients are limited
per IP and addresses per hour (subscribers.optin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Path, Request
from fastapi.responses import HTMLResponse

from mailer.services import readers
from mailer.web.deps import (
    DbSession,
    Env,
    FormToken,
    PageRenderer,
    ReadSession,
    require_form_token,
    same_site,
    under_limit,
)
from mailer.web.security import form_token
from subscribers.errors import InvalidEmail

__all__ = ["router"]

router = APIRouter(tags=["signup"])
Token = Annotated[str, Path(max_length=100, description="the signed confirmation token")]


def _form(
    pages: PageRenderer,
    env: Env,
    lang: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    email: str = "",
    chosen: frozenset[str] = frozenset(),
) -> HTMLResponse:
    return pages.page(
        "subscribe.html",
        lang,
        status_code=status_code,
        groups=env.registry.grouped(),
        csrf=form_token(env.settings.secret_key, "subscribe"),
        error=error,
        email=email,
        chosen=chosen,
    )


@router.get("/subscribe", response_class=HTMLResponse, summary="The signup form")
def subscribe_form(request: Request, env: Env, pages: PageRenderer) -> HTMLResponse:
    return _form(pages, env, pages.lang_for(request))


@router.post("/subscribe", response_class=HTMLResponse, summary="Sign up (double opt-in)")
def subscribe(
    request: Request,
    background: BackgroundTasks,
    session: DbSession,
    env: Env,
    pages: PageRenderer,
    csrf: FormToken,
    email: Annotated[str, Form(max_length=320)],
    topics: Annotated[list[str], Form(max_length=100)] = [],  # noqa: B006 (FastAPI copies defaults)
    locale: Annotated[str | None, Form(max_length=8)] = None,
    website: Annotated[str, Form(max_length=200, description="a honeypot: people leave it empty")] = "",
) -> HTMLResponse:
    same_site(request, env)
    require_form_token(env, "subscribe", "", csrf)
    lang = pages.lang_for(request, locale)
    if website:  # a bot filled the field people never see: answer as for anyone, do nothing
        return pages.page("check_inbox.html", lang)
    under_limit(request, "signup")
    chosen = frozenset(topics)
    try:
        _, outgoing = readers.signup(session, env, email, chosen, locale)
    except InvalidEmail:
        return _form(
            pages,
            env,
            lang,
            status_code=400,
            error=pages.words[lang]["bad_email"],
            email=email[:320],
            chosen=chosen,
        )
    background.add_task(readers.deliver_stepwise, env, outgoing)  # after the answer, and after the commit
    return pages.page("check_inbox.html", lang)


@router.get("/confirm/{token}", response_class=HTMLResponse, summary="The confirmation page")
def confirm_page(
    token: Token, request: Request, session: ReadSession, env: Env, pages: PageRenderer
) -> HTMLResponse:
    page = readers.confirm_page(session, env, token)
    return pages.page(
        "confirm.html",
        pages.lang_for(request, page.locale),
        page=page,
        token=token,
        csrf=form_token(env.settings.secret_key, "confirm", token),
    )


@router.post("/confirm/{token}", response_class=HTMLResponse, summary="Confirm a signup")
def confirm(
    token: Token, request: Request, session: DbSession, env: Env, pages: PageRenderer, csrf: FormToken
) -> HTMLResponse:
    same_site(request, env)
    require_form_token(env, "confirm", token, csrf)
    result = readers.confirm(session, env, token)
    subscriber = readers.open_link(session, env, token, "confirm")
    prefs = readers.link_token(env, subscriber, "preferences")
    return pages.page(
        "confirmed.html", pages.lang_for(request, result.locale), result=result, preferences_token=prefs
    )
