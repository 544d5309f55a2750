"""Server-rendered pages: the Jinja2 environment on ``templates/web/``, the words of each language
(``templates/web/strings.yaml``; another community edits that file, not the code) and the choice of
language: the subscriber's, else the browser's ``Accept-Language``, else the newsletter's default."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from starlette.requests import Request
from starlette.responses import HTMLResponse

from mailer.errors import ConfigurationError
from mailer.services.env import AppEnv

__all__ = ["LANGS", "Pages", "accept_language"]

LANGS = ("zh", "en")


@lru_cache(maxsize=4)
def _strings(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read the page strings: {exc}") from None
    if not isinstance(data, dict) or "en" not in data:
        raise ConfigurationError(f"{path}: expected a mapping of language to strings, with 'en'")
    english = {str(k): str(v) for k, v in data["en"].items()}
    # a language that lacks a string falls back to the English one
    return {
        str(lang): {**english, **{str(k): str(v) for k, v in words.items()}} for lang, words in data.items()
    }


def accept_language(header: str | None, *, default: str) -> str:
    """The best of LANGS for an ``Accept-Language`` header (``zh-CN,zh;q=0.9,en;q=0.8``)."""
    best, best_q = default, 0.0
    for item in (header or "")[:500].split(","):
        tag, _, params = item.strip().partition(";")
        lang = tag.strip().lower().split("-", 1)[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if lang in LANGS and q > best_q:
            best, best_q = lang, q
    return best


def _atom_time(value: datetime | None) -> str:
    """RFC 3339 in UTC, as Atom wants it (the epoch for an empty feed)."""
    moment = value or datetime(1970, 1, 1, tzinfo=UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Pages:
    """Renders a page template with the brand, the language's words and the URL contract."""

    def __init__(self, env: AppEnv) -> None:
        self.env = env
        folder = Path(env.settings.templates_dir) / "web"
        self.folder = folder
        self.jinja = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            autoescape=jinja2.select_autoescape(["html", "xml"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # read once per process: no file checks on every page
        )
        self.jinja.filters["atom_time"] = _atom_time
        public, admin = _strings(folder / "strings.yaml"), _strings(folder / "admin" / "strings.yaml")
        self.words = {lang: {**admin.get(lang, admin["en"]), **words} for lang, words in public.items()}
        default = env.settings.default_lang.split("-", 1)[0]
        self.default_lang = default if default in LANGS else "en"

    def lang_for(self, request: Request, locale: str | None = None) -> str:
        if locale and locale.split("-", 1)[0] in LANGS:
            return locale.split("-", 1)[0]
        return accept_language(request.headers.get("accept-language"), default=self.default_lang)

    def render(self, name: str, lang: str, **context: Any) -> str:
        words: Mapping[str, str] = self.words.get(lang, self.words["en"])
        return self.jinja.get_template(name).render(
            t=words, lang=lang, brand=self.env.brand, urls=self.env.urls, **context
        )

    def page(
        self,
        name: str,
        lang: str,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        return HTMLResponse(
            self.render(name, lang, **context), status_code=status_code, headers=dict(headers or {})
        )

    def message(
        self, lang: str, title: str, text: str, *, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page that says one thing (done, not valid, try later)."""
        return self.page("message.html", lang, status_code=status_code, title=title, text=text, **context)
