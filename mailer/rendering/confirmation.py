"""The double opt-in confirmation email (zh/en) for a signup that subscribers.optin.signup accepted.

The MJML template is compiled once per language and template folder (mjml + premailer cost tens of
milliseconds); each signup only fills in its link, address and topics, HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
from markupsafe import escape

from mailer.errors import TemplateError
from mailer.rendering.render import Brand, compile_mjml
from mailer.topics import TopicRegistry
from mailer.urls import Urls
from subscribers.optin import SignupResult

__all__ = ["ConfirmationEmail", "confirm_url", "confirmation_email"]

HTML_TEMPLATE = "confirm.mjml.j2"
TEXT_TEMPLATE = "confirm.txt.j2"

WORDS = {
    "zh": {
        "subject": "请确认订阅 {name}",
        "preheader": "点击邮件中的按钮，完成订阅。",
        "heading": "请确认你的订阅",
        "intro": "有人（希望是你）用这个地址订阅了我们的通讯：",
        "topics": "关注的主题：",
        "no_topics": "（仅公共内容）",
        "button": "确认订阅",
        "or_copy": "按钮无法点击时，请把下面的链接复制到浏览器中打开：",
        "ignore": "如果不是你本人操作，请忽略这封邮件：不确认就不会收到任何邮件。",
        "separator": "、",
    },
    "en": {
        "subject": "Please confirm your subscription to {name}",
        "preheader": "One click on the button and you are subscribed.",
        "heading": "Please confirm your subscription",
        "intro": "Someone, hopefully you, subscribed this address to our newsletter:",
        "topics": "Topics: ",
        "no_topics": "(the news for everyone only)",
        "button": "Confirm subscription",
        "or_copy": "If the button does not work, copy this link into your browser:",
        "ignore": "If this was not you, ignore this email: without confirmation you will get nothing.",
        "separator": ", ",
    },
}
# Placeholders: plain letters survive MJML and premailer untouched, in text and in href attributes.
_URL, _EMAIL, _TOPICS = "nlconfirmurlplaceholder", "nlemailplaceholder", "nltopicsplaceholder"


@dataclass(frozen=True)
class ConfirmationEmail:
    to: str
    lang: str
    subject: str
    preheader: str
    html: str
    text: str
    confirm_url: str


def confirm_url(brand: Brand, token: str) -> str:
    return Urls(brand.base_url).confirm(token)


@lru_cache(maxsize=16)
def _compiled(brand: Brand, lang: str) -> tuple[str, str, str, str]:
    """(subject, preheader, html, text) of a language, with placeholders for the per-signup values."""
    words = WORDS[lang]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(brand.email_templates_dir)),
        autoescape=jinja2.select_autoescape(["j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    subject = words["subject"].format(name=brand.name)
    context = {
        "brand": brand,
        "lang": lang,
        "subject": subject,
        "preheader": words["preheader"],
        "font_stack": brand.font_stack,
        "t": words,
        "confirm_url": _URL,
        "email": _EMAIL,
        "topics": _TOPICS,
    }
    try:
        mjml = env.get_template(HTML_TEMPLATE).render(context)
        text_env = env.overlay(autoescape=False)
        text = text_env.get_template(TEXT_TEMPLATE).render(context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{HTML_TEMPLATE}: {str(exc).splitlines()[0]}") from None
    return subject, words["preheader"], compile_mjml(mjml, HTML_TEMPLATE), text


def confirmation_email(
    signup: SignupResult, brand: Brand, registry: TopicRegistry | None = None
) -> ConfirmationEmail:
    """The email to send for a signup whose ``confirm_token`` is set, in the subscriber's language."""
    if signup.confirm_token is None:
        raise ValueError("this signup needs no confirmation email (check signup.send_confirmation)")
    lang = signup.locale if signup.locale in WORDS else "en"
    words = WORDS[lang]
    subject, preheader, html, text = _compiled(brand, lang)
    names = _topic_names(signup.topics, registry, lang)
    topics = words["separator"].join(names) if names else words["no_topics"]
    url = confirm_url(brand, signup.confirm_token)
    html = html.replace(_URL, str(escape(url))).replace(_EMAIL, str(escape(signup.email)))
    html = html.replace(_TOPICS, str(escape(topics)))
    text = text.replace(_URL, url).replace(_EMAIL, signup.email).replace(_TOPICS, topics)
    return ConfirmationEmail(signup.email, lang, subject, preheader, html, text, url)


def _topic_names(keys: frozenset[str], registry: TopicRegistry | None, lang: str) -> list[str]:
    if registry is None:
        return sorted(keys)
    known: Mapping[str, str] = {t.key: t.display_name(lang) for t in registry.topics}
    return [known.get(key, key) for key in sorted(keys)]
