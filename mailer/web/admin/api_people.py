"""Admin API: subscribers (search, edit, CSV import and export) and the suppression list (view, removal with
a reason that goes into the address's event log). Every route needs an admin (auth.py)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from mailer.services import subscribers
from mailer.web.admin import schemas
from mailer.web.admin.auth import UNAUTHORIZED, ApiAdmin
from mailer.web.admin.bodies import spool_body
from mailer.web.deps import DbSession, Env, ReadSession, read_only
from subscribers.csvreader import Reject

router = APIRouter(prefix="/api", tags=["admin: subscribers"], responses=UNAUTHORIZED)
log = logging.getLogger(__name__)

SubscriberId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_REJECTS_SHOWN = 1000


@router.get("/subscribers", summary="Search or page through subscribers")
def list_or_search(
    admin: ApiAdmin,
    env: Env,
    session: ReadSession,
    q: Annotated[str | None, Query(max_length=320, description="Part of an address or name")] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    topic: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="The last id of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[schemas.Subscriber]:
    if q is not None:
        rows = subscribers.search(session, q, limit=limit)
    else:
        rows = list(
            subscribers.list_subscribers(
                session, env, status=status, topic=topic, after_id=after, limit=limit
            ).rows
        )
    return [schemas.Subscriber.of(s) for s in rows]


@router.get("/subscribers/export", summary="Every subscriber as CSV (import's format)")
def export(
    admin: ApiAdmin,
    env: Env,
    status: Annotated[list[str] | None, Query(max_length=8)] = None,
) -> StreamingResponse:
    buffer = io.StringIO()
    with read_only(env) as session:
        count = subscribers.export(session, buffer, statuses=status)
    log.info("%s exported %d subscribers", admin.name, count)

    def chunks() -> Iterator[bytes]:
        text = buffer.getvalue()
        for start in range(0, len(text), 64 * 1024):
            yield text[start : start + 64 * 1024].encode()

    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="subscribers.csv"'},
    )


@router.post(
    "/subscribers/import",
    summary="Import a CSV (the request body; streamed): adds and updates, never duplicates",
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def import_csv(
    request: Request,
    admin: ApiAdmin,
    env: Env,
    topics: Annotated[str | None, Query(max_length=2000, description="Topics for rows without any")] = None,
    status: Annotated[str, Query(max_length=16)] = subscribers.ImportStatus.ACTIVE,
) -> schemas.ImportResult:
    subscribers.import_status(status)  # the core's rule, before the body is read
    body = await spool_body(request, env.settings.admin_upload_bytes)
    rejects: list[Reject] = []

    def keep(reject: Reject) -> None:  # the first ones only: a file of bad lines must not fill memory
        if len(rejects) < MAX_REJECTS_SHOWN:
            rejects.append(reject)

    def run() -> schemas.ImportResult:
        with body:
            report = subscribers.import_stepwise(
                env,
                body,
                topics=topics,
                status=status,
                on_reject=keep,
            )
        return schemas.ImportResult(
            added=report.added, updated=report.updated, unchanged=report.unchanged, rejected=report.rejected,
            rows=report.rows,
            rejects=[{"line": r.line, "reason": r.reason} for r in rejects],
        )  # fmt: skip

    result = await run_in_threadpool(run)
    log.info("%s imported a CSV: %d added, %d updated, %d rejected", admin.name, result.added, result.updated,
             result.rejected)  # fmt: skip
    return result


@router.get("/subscribers/{subscriber_id}", summary="One subscriber")
def show(subscriber_id: SubscriberId, admin: ApiAdmin, session: ReadSession) -> schemas.Subscriber:
    return schemas.Subscriber.of(subscribers.show(session, subscriber_id).row)


@router.patch(
    "/subscribers/{subscriber_id}",
    summary="Change topics or language, or unsubscribe",
)
def edit(
    subscriber_id: SubscriberId, body: schemas.SubscriberEdit, admin: ApiAdmin, env: Env, session: DbSession
) -> schemas.Subscriber:
    row = subscribers.edit(
        session, env, subscriber_id, topics=body.topics, locale=body.locale, unsubscribe=body.unsubscribe
    )
    log.info("%s edited subscriber %d", admin.name, subscriber_id)
    return schemas.Subscriber.of(row)


@router.get(
    "/suppressions",
    summary="The suppression list, newest first",
    tags=["admin: suppressions"],
)
def suppressions(
    admin: ApiAdmin,
    session: ReadSession,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[schemas.Suppression]:
    return [
        schemas.Suppression.of(s) for s in subscribers.suppressions(session, before_id=before, limit=limit)
    ]


@router.delete(
    "/suppressions/{email}",
    status_code=204,
    summary="Take an address off the suppression list, with the reason (kept in its event log)",
    tags=["admin: suppressions"],
)
def unsuppress(
    email: Annotated[str, Path(max_length=320)],
    admin: ApiAdmin,
    env: Env,
    session: DbSession,
    reason: Annotated[str, Query(min_length=3, max_length=500, description="Why it may receive mail again")],
) -> None:
    subscribers.unsuppress(session, env, email, reason=reason, admin=admin.name)
    log.warning("%s took %s off the suppression list: %s", admin.name, email, " ".join(reason.split()))
