"""The archive: ``GET /issues/`` (newest first), ``GET /issues/{slug}`` (an issue's web version: every topic,
or ``?topics=nova,cinder``), ``GET /issues/feed.xml`` (Atom; ``?topic=nova`` for the general sections plus
one topic), and ``GET /view/{campaign_id}/{token}``, a reader's own copy (the "view in browser" link)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from mailer.services import archive
from mailer.web.deps import Env, PageRenderer, ReadSession
from mailer.web.security import EMAIL_PAGE_CSP
from subscribers.normalise import split_topics

__all__ = ["router"]

router = APIRouter(tags=["archive"])
PUBLIC_CACHE = {"cache-control": "public, max-age=300"}
PAGE_CACHE = {**PUBLIC_CACHE, "vary": "Accept-Language"}  # the archive page speaks the browser's language
EMAIL_PAGE = {"content-security-policy": EMAIL_PAGE_CSP}


@router.get("/issues/", response_class=HTMLResponse, summary="The issues that went out, newest first")
def issues(request: Request, session: ReadSession, env: Env, pages: PageRenderer) -> HTMLResponse:
    found = archive.entries(session, env)
    lang = pages.lang_for(request)
    topics = [(t.key, t.display_name(lang)) for t in env.registry.topics]
    return pages.page("archive.html", lang, entries=found, topics=topics, headers=PAGE_CACHE)


@router.get("/issues/feed.xml", summary="Atom feed of the issues (per topic with ?topic=)")
def feed(
    request: Request,
    session: ReadSession,
    env: Env,
    pages: PageRenderer,
    topic: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_-]+$")] = None,
) -> Response:
    found = archive.entries(session, env, topic=topic)
    lang = pages.default_lang
    title = env.brand.name + (f" · {env.registry.get(topic).display_name(lang)}" if topic else "")
    xml = pages.render(
        "feed.xml", lang, entries=found, topic=topic, title=title, feed_url=env.urls.feed(topic)
    )
    return Response(xml, media_type="application/atom+xml; charset=utf-8", headers=PUBLIC_CACHE)


@router.get("/issues/{slug}", response_class=HTMLResponse, summary="An issue's web version")
def issue(
    slug: Annotated[str, Path(max_length=100)],
    session: ReadSession,
    env: Env,
    topics: Annotated[str | None, Query(max_length=500, description="topic keys, comma-separated")] = None,
) -> HTMLResponse:
    chosen = None if topics is None else frozenset(split_topics(topics))
    _, html = archive.issue_html(session, env, slug, chosen)
    return HTMLResponse(html, headers={**PUBLIC_CACHE, **EMAIL_PAGE})


@router.get("/view/{campaign_id}/{token}", response_class=HTMLResponse, summary="A reader's own copy")
def view(
    campaign_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    token: Annotated[str, Path(max_length=100)],
    session: ReadSession,
    env: Env,
) -> HTMLResponse:
    return HTMLResponse(archive.reader_copy(session, env, campaign_id, token), headers=EMAIL_PAGE)
