"""Sample data shipped with the package for ``newsletter demo``: an issue written for the demo (a general
section, one section per project, Chinese like the reference weekly), synthetic subscribers, and the demo
newsletter's identity (settings in .env form)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["DEMO_ENV", "ISSUE", "SUBSCRIBERS"]


def _sample(name: str) -> Path:
    return Path(str(importlib.resources.files(__name__).joinpath(name)))


ISSUE = _sample("issue.md")
SUBSCRIBERS = _sample("subscribers.csv")
DEMO_ENV = _sample("demo.env")
