"""Leaving: ``GET /unsubscribe/{token}`` shows a confirm button and changes nothing (mail scanners follow
links); ``POST`` unsubscribes: the page's button (a form token, same site), or RFC 8058 one-click from a
mail client (body ``List-Unsubscribe=One-Click``, no cookie and no form token: the signed link is the
proof). Both are idempotent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from mailer.services import readers
from mailer.services.env import AppEnv
from mailer.web.deps import (
    app_env,
    app_pages,
    form_schema,
    in_thread,
    read_form,
    read_only,
    request_transaction,
    require_form_token,
    same_site,
)
from mailer.web.security import form_token

__all__ = ["router"]

router = APIRouter(tags=["unsubscribe"])
Token = Annotated[str, Path(max_length=100, description="the signed link token")]
ONE_CLICK = "One-Click"


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, summary="The unsubscribe page")
def unsubscribe_page(token: Token, request: Request) -> HTMLResponse:
    env, pages = app_env(request), app_pages(request)
    with read_only(env) as session:
        page = readers.unsubscribe_page(session, env, token)
    lang = pages.lang_for(request, page.locale)
    return pages.page(
        "unsubscribe.html",
        lang,
        page=page,
        token=token,
        csrf=form_token(env.settings.secret_key, "unsubscribe", token),
    )


# RFC 8058's field, or the page's button with its form token
FIELDS = {
    "List-Unsubscribe": (32, "RFC 8058 one-click: One-Click (no cookie, no form token)"),
    "csrf": (64, "the unsubscribe page's form token (hidden field)"),
}


@router.post(
    "/unsubscribe/{token}",
    summary="Unsubscribe (the page's button, or RFC 8058 one-click)",
    openapi_extra=form_schema(FIELDS),
)
async def unsubscribe(token: Token, request: Request) -> Response:
    form = await read_form(request, FIELDS)
    env = app_env(request)
    one_click = form["List-Unsubscribe"]
    if one_click is not None:
        if one_click != ONE_CLICK:
            raise HTTPException(400, "expected List-Unsubscribe=One-Click")
        await in_thread(_leave, env, token, "one-click")
        return PlainTextResponse("unsubscribed\n")
    same_site(request, env)
    require_form_token(env, "unsubscribe", token, form["csrf"])
    return await in_thread(_leave_from_page, request, env, token)


def _leave(env: AppEnv, token: str, source: str) -> None:
    with request_transaction(env) as session:
        readers.unsubscribe(session, env, token, source=source)


def _leave_from_page(request: Request, env: AppEnv, token: str) -> HTMLResponse:
    with request_transaction(env) as session:
        readers.unsubscribe(session, env, token, source="unsubscribe-page")
        page = readers.unsubscribe_page(session, env, token)
    pages = app_pages(request)
    return pages.page("unsubscribed.html", pages.lang_for(request, page.locale), page=page)
