"""The preference centre: ``GET /preferences/{token}`` shows every topic of the registry by group (readers
add topics as well as remove them), the language, and "leave everything"; ``?add=KEY`` / ``?remove=KEY``
(the per-topic links of an issue) pre-select one change and ask to confirm it: a GET never changes
anything. ``POST`` saves (same site, a form token bound to the link) and shows what changed.
``/preferences`` asks for a new link by email: the same answer whether or not the address is known."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Form, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from mailer.services import archive, readers
from mailer.services.env import AppEnv
from mailer.web.deps import (
    FormToken,
    app_env,
    app_pages,
    read_only,
    request_transaction,
    require_form_token,
    same_site,
    under_limit,
)
from mailer.web.pages import Pages
from mailer.web.security import form_token
from subscribers.errors import InvalidEmail

__all__ = ["router"]

router = APIRouter(tags=["preferences"])
Token = Annotated[str, Path(max_length=100, description="the signed preferences token")]
TopicKey = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_-]+$")]


def _render(
    request: Request,
    session: Session,
    env: AppEnv,
    pages: Pages,
    token: str,
    *,
    add: str | None = None,
    remove: str | None = None,
    changes: readers.Changes | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    page = readers.preference_page(
        session, env, token, lang_for=lambda locale: pages.lang_for(request, locale), add=add, remove=remove
    )
    lang = page.lang
    latest = archive.latest(session, env)
    return pages.page(
        "preferences.html",
        lang,
        status_code=status_code,
        page=page,
        token=token,
        changes=changes,
        latest=latest,
        csrf=form_token(env.settings.secret_key, "preferences", token),
        topic_name=lambda key: env.registry.get(key).display_name(lang),
    )


@router.get("/preferences/{token}", response_class=HTMLResponse, summary="The preference centre")
def preferences_page(
    token: Token, request: Request, add: TopicKey = None, remove: TopicKey = None
) -> HTMLResponse:
    env, pages = app_env(request), app_pages(request)
    with read_only(env) as session:
        return _render(request, session, env, pages, token, add=add, remove=remove)


@router.post("/preferences/{token}", response_class=HTMLResponse, summary="Save preferences, leave or rejoin")
def save_preferences(
    token: Token,
    request: Request,
    csrf: FormToken,
    action: Annotated[Literal["save", "leave", "rejoin"], Form()] = "save",
    topics: Annotated[list[str], Form(max_length=100)] = [],  # noqa: B006 (FastAPI copies defaults)
    locale: Annotated[str | None, Form(max_length=8)] = None,
) -> HTMLResponse:
    env, pages = app_env(request), app_pages(request)
    same_site(request, env)
    require_form_token(env, "preferences", token, csrf)
    with request_transaction(env) as session:
        if action == "leave":
            readers.unsubscribe(session, env, token, source="preferences")
            changes = readers.Changes(status="unsubscribed")
        elif action == "rejoin":
            changes = readers.rejoin(session, env, token)
        else:
            changes = readers.save_preferences(session, env, token, topics, locale)
        return _render(request, session, env, pages, token, changes=changes)


@router.get("/preferences", response_class=HTMLResponse, summary="Ask for a new preferences link")
def request_form(request: Request) -> HTMLResponse:
    env, pages = app_env(request), app_pages(request)
    lang = pages.lang_for(request)
    return pages.page(
        "request_link.html",
        lang,
        csrf=form_token(env.settings.secret_key, "request_link"),
        error=None,
        email="",
    )


@router.post("/preferences", response_class=HTMLResponse, summary="Email me a new preferences link")
def request_link(
    request: Request,
    background: BackgroundTasks,
    csrf: FormToken,
    email: Annotated[str, Form(max_length=320)],
    website: Annotated[str, Form(max_length=200, description="a honeypot: people leave it empty")] = "",
) -> HTMLResponse:
    env, pages = app_env(request), app_pages(request)
    same_site(request, env)
    require_form_token(env, "request_link", "", csrf)
    lang = pages.lang_for(request)
    if website:
        return pages.page("link_sent.html", lang)
    under_limit(request, "request_link")
    try:
        with request_transaction(env) as session:
            outgoing = readers.request_link(session, env, email)
    except InvalidEmail:
        return pages.page(
            "request_link.html",
            lang,
            status_code=400,
            csrf=form_token(env.settings.secret_key, "request_link"),
            error=pages.words[lang]["bad_email"],
            email=email[:320],
        )
    background.add_task(readers.deliver_stepwise, env, outgoing)  # after the answer, and after the commit
    return pages.page("link_sent.html", lang)
