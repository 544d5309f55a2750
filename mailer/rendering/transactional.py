"""Transactional emails that ask a reader for one click, in zh or en: the double opt-in confirmation of a
signup, and a new link to the preference centre for a reader who lost every email.

Both come from one pair of templates (``email/action.mjml.j2`` and ``email/action.txt.j2``) with the words
of their kind. MJML and premailer cost tens of milliseconds, so each kind and language is compiled once
per template folder; a message only fills in its link, address and topics, HTML-escaped. Links come from
the URL contract (mailer/urls.py). Sending is mailer.sending.transactional's job.
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

__all__ = ["KINDS", "TransactionalEmail", "confirmation_email", "preferences_link_email"]

HTML_TEMPLATE = "action.mjml.j2"
TEXT_TEMPLATE = "action.txt.j2"

WORDS: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "confirm": {
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
    },
    "preferences_link": {
        "zh": {
            "subject": "{name}：你的订阅设置链接",
            "preheader": "用这个链接修改关注的主题或退订。",
            "heading": "你的订阅设置",
            "intro": "有人（希望是你）为这个地址索取了订阅设置的链接：",
            "topics": "",
            "no_topics": "",
            "button": "打开订阅设置",
            "or_copy": "按钮无法点击时，请把下面的链接复制到浏览器中打开：",
            "ignore": "如果不是你本人操作，请忽略这封邮件：你的订阅不会有任何变化。",
            "separator": "、",
        },
        "en": {
            "subject": "{name}: your subscription settings link",
            "preheader": "Change your topics or unsubscribe with this link.",
            "heading": "Your subscription settings",
            "intro": "Someone, hopefully you, asked for the settings link of this address:",
            "topics": "",
            "no_topics": "",
            "button": "Open my settings",
            "or_copy": "If the button does not work, copy this link into your browser:",
            "ignore": "If this was not you, ignore this email: nothing about your subscription changes.",
            "separator": ", ",
        },
    },
}
KINDS = tuple(WORDS)
# Placeholders: plain letters survive MJML and premailer untouched, in text and in href attributes.
_URL, _EMAIL, _TOPICS = "nlactionurlplaceholder", "nlemailplaceholder", "nltopicsplaceholder"


@dataclass(frozen=True)
class TransactionalEmail:
    kind: str  # one of KINDS
    to: str
    lang: str
    subject: str
    preheader: str
    html: str
    text: str
    action_url: str


@lru_cache(maxsize=32)
def _compiled(brand: Brand, kind: str, lang: str) -> tuple[str, str, str, str]:
    """(subject, preheader, html, text) of a kind and language, placeholders for the per-message values."""
    words = WORDS[kind][lang]
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
        "action_url": _URL,
        "email": _EMAIL,
        "topics": _TOPICS,
    }
    try:
        mjml = env.get_template(HTML_TEMPLATE).render(context)
        text = env.overlay(autoescape=False).get_template(TEXT_TEMPLATE).render(context)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{HTML_TEMPLATE}: {str(exc).splitlines()[0]}") from None
    return subject, words["preheader"], compile_mjml(mjml, HTML_TEMPLATE), text


def _email(kind: str, brand: Brand, to: str, locale: str, url: str, topics: str = "") -> TransactionalEmail:
    lang = locale if locale in WORDS[kind] else "en"
    subject, preheader, html, text = _compiled(brand, kind, lang)
    html = html.replace(_URL, str(escape(url))).replace(_EMAIL, str(escape(to)))
    html = html.replace(_TOPICS, str(escape(topics)))
    text = text.replace(_URL, url).replace(_EMAIL, to).replace(_TOPICS, topics)
    return TransactionalEmail(kind, to, lang, subject, preheader, html, text, url)


def confirmation_email(
    signup: SignupResult, brand: Brand, registry: TopicRegistry | None = None
) -> TransactionalEmail:
    """The email to send for a signup whose ``confirm_token`` is set, in the subscriber's language."""
    if signup.confirm_token is None:
        raise ValueError("this signup needs no confirmation email (check signup.send_confirmation)")
    words = WORDS["confirm"].get(signup.locale, WORDS["confirm"]["en"])
    names = _topic_names(signup.topics, registry, signup.locale)
    topics = words["separator"].join(names) if names else words["no_topics"]
    url = Urls(brand.base_url).confirm(signup.confirm_token)
    return _email("confirm", brand, signup.email, signup.locale, url, topics)


def preferences_link_email(to: str, locale: str, token: str, brand: Brand) -> TransactionalEmail:
    """A new link to the preference centre (signed with the ``preferences`` purpose) for ``to``."""
    return _email("preferences_link", brand, to, locale, Urls(brand.base_url).preferences(token))


def _topic_names(keys: frozenset[str], registry: TopicRegistry | None, lang: str) -> list[str]:
    if registry is None:
        return sorted(keys)
    known: Mapping[str, str] = {t.key: t.display_name(lang) for t in registry.topics}
    return [known.get(key, key) for key in sorted(keys)]
