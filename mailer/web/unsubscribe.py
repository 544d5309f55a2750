"""Leaving: ``GET /unsubscribe/{token}`` shows a confirm button and changes nothing (mail scanners follow
links); ``POST`` unsubscribes: the page's button (a form token, same site), or RFC 8058 one-click from a
mail client (body ``List-Unsubscribe=One-Click``, no cookie and no form token: the signed link is the
proof). Both are idempotent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from mailer.services import readers
from mailer.web.deps import (
    app_env,
    app_pages,
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


@router.post("/unsubscribe/{token}", summary="Unsubscribe (the page's button, or RFC 8058 one-click)")
def unsubscribe(
    token: Token,
    request: Request,
    list_unsubscribe: Annotated[str | None, Form(alias="List-Unsubscribe", max_length=32)] = None,
    csrf: Annotated[str | None, Form(max_length=64)] = None,
) -> Response:
    env = app_env(request)
    if list_unsubscribe is not None:
        if list_unsubscribe != ONE_CLICK:
            raise HTTPException(400, "expected List-Unsubscribe=One-Click")
        with request_transaction(env) as session:
            readers.unsubscribe(session, env, token, source="one-click")
        return PlainTextResponse("unsubscribed\n")
    same_site(request, env)
    require_form_token(env, "unsubscribe", token, csrf)
    with request_transaction(env) as session:
        readers.unsubscribe(session, env, token, source="unsubscribe-page")
        page = readers.unsubscribe_page(session, env, token)
    pages = app_pages(request)
    return pages.page("unsubscribed.html", pages.lang_for(request, page.locale), page=page)
