"""SES feedback (bounces, complaints) arriving through SNS: verify with the settings' rules, store once,
apply. The CLI's ``feedback apply``, the demo and the coming webhook call ``receive``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mailer.feedback.apply import SKIP_VERIFICATION, FeedbackResult, Verification, receive_stepwise
from mailer.feedback.sns import CachedCertificates, CertificateDirectory, SnsVerifier, fetch_certificate_https
from mailer.sending.health import HealthLimits
from mailer.services.env import AppEnv

__all__ = ["receive", "verifier"]


def verifier(env: AppEnv, *, cert_dir: Path | None = None) -> SnsVerifier:
    """SNS verification by the settings: topic allow-list, message age, certificate dates; certificates
    read from ``cert_dir`` (else NEWSLETTER_SNS_CERT_DIR), else fetched over HTTPS, cached either way."""
    settings = env.settings
    folder = cert_dir or settings.sns_cert_dir
    fetch = CertificateDirectory(folder) if folder else fetch_certificate_https
    max_age = settings.sns_max_age_seconds
    return SnsVerifier(
        CachedCertificates(fetch),
        max_age=dt.timedelta(seconds=max_age) if max_age > 0 else None,
        check_validity=settings.sns_check_certificate_dates,
        topic_arns=frozenset(settings.sns_topic_arns),
    )


def receive(
    env: AppEnv,
    body: str | bytes | Mapping[str, Any],
    *,
    verify: Verification | None = None,
    trust_unsigned: bool = False,
    as_of: dt.datetime | None = None,
    message_type_header: str | None = None,
) -> FeedbackResult:
    """Verify (``verify``, default: ``verifier(env)``; ``trust_unsigned`` applies a bare SES notification
    generated locally, unverified), store once and apply one feedback message; commits."""
    check: Verification = SKIP_VERIFICATION if trust_unsigned else (verify or verifier(env))
    return receive_stepwise(
        body,
        sessions=env.sessions,
        verifier=check,
        now=as_of or env.now(),
        soft_bounce_limit=env.settings.soft_bounce_limit,
        message_type_header=message_type_header,
        health=HealthLimits.from_settings(env.settings),
    )
