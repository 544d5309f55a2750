"""The routes a built web app serves, every router included (the admin's too): for the tests that hold
each route to the URL contract and each GET route to the read-only session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

__all__ = ["ServedRoute", "served_routes"]


@dataclass(frozen=True)
class ServedRoute:
    path: str  # the path template as the app matches it: "/admin/campaigns/{campaign_id}"
    methods: frozenset[str]  # empty for a mount (static files)
    name: str
    dependencies: frozenset[Callable[..., Any]]  # every dependency it resolves, nested ones included
    mount: bool = False

    def __str__(self) -> str:
        return f"{','.join(sorted(self.methods)) or 'MOUNT'} {self.path} ({self.name})"


def _calls(dependant: Dependant | None) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies if dependant is not None else ():
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def served_routes(app: FastAPI) -> list[ServedRoute]:
    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, Mount):
            found.append(ServedRoute(str(context.path), frozenset(), str(context.name), frozenset(), True))
            continue
        dependant = getattr(context, "dependant", None)
        found.append(
            ServedRoute(
                str(context.path),
                frozenset(context.methods or ()),
                str(context.name),
                frozenset(_calls(dependant)),
            )
        )
    return found
