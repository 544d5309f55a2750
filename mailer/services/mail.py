"""Transactional mail services: the double opt-in confirmation of a signup, a new preferences link. Each
renders the reader's email (their language) and sends it now through the configured transport and its
shared rate limiter (mailer/sending/transactional.py); the signup form and the preferences page of the web
app call these."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailer.rendering.transactional import TransactionalEmail, confirmation_email, preferences_link_email
from mailer.sending.transactional import send_transactional
from mailer.services.env import AppEnv
from subscribers.optin import SignupResult
from subscribers.store import get_subscriber
from subscribers.tokens import make_token

__all__ = ["Sent", "send_confirmation", "send_preferences_link"]


@dataclass(frozen=True)
class Sent:
    """What went out: the email as rendered and the provider's message id."""

    mail: TransactionalEmail
    provider_id: str


def send_confirmation(env: AppEnv, signup: SignupResult, *, transport: str | None = None) -> Sent | None:
    """Send the confirmation email a signup asks for; None when it asks for none (already active,
    suppressed). A TransportError when it cannot leave (the signup stays pending; the reader may retry)."""
    if not signup.send_confirmation:
        return None
    mail = confirmation_email(signup, env.brand, env.registry)
    result = send_transactional(env.send_context(), mail, transport=transport or env.settings.transport)
    return Sent(mail, result.message_id)


def send_preferences_link(
    session: Session, env: AppEnv, subscriber_id: int, *, transport: str | None = None
) -> Sent:
    """Send a subscriber a new link to their preference centre (in their language)."""
    subscriber = get_subscriber(session, subscriber_id)
    token = make_token(
        env.settings.signing_key, subscriber.id, "preferences", salt=subscriber.token_salt, now=env.now()
    )
    mail = preferences_link_email(subscriber.email, subscriber.locale, token, env.brand)
    result = send_transactional(env.send_context(), mail, transport=transport or env.settings.transport)
    return Sent(mail, result.message_id)
