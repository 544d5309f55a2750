"""The yardstick of bench/web.py: a FastAPI route that does nothing, served by the same uvicorn settings,
written as the app's routes are (a plain ``def``, run in the thread pool)."""

from fastapi import FastAPI
from fastapi.responses import Response

app = FastAPI()


@app.get("/noop")
def noop() -> Response:
    return Response(b"", media_type="text/plain")
