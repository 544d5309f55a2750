"""Reading an upload's body after the caller has been authenticated (no route of the admin side declares a
body FastAPI would read before its dependencies ran)."""

from __future__ import annotations

import tempfile
from typing import BinaryIO, cast

from fastapi import HTTPException, Request

__all__ = ["read_body", "spool_body"]

SPOOL_IN_MEMORY = 1024 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the upload is larger than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def spool_body(request: Request, limit: int) -> BinaryIO:
    """The body in a temporary file (in memory up to 1 MB), rewound; a CSV of millions of rows never
    sits whole in memory."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115  (the caller closes it)
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the upload is larger than {limit:,} bytes")
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return cast(BinaryIO, spool)
