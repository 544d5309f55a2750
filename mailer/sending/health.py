"""Campaign health: SES reviews an account whose bounce rate nears 5 % or complaint rate 0.1 %, so a campaign
whose applied feedback passes the settings' limits pauses itself before it hurts the account. Pure: the
counts in, a reason (or None) out; mailer/feedback/effects.py counts and pauses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["HealthLimits", "verdict"]


@dataclass(frozen=True)
class HealthLimits:
    bounce_rate: float = 0.05
    complaint_rate: float = 0.001
    min_sent: int = 500  # below this many sent, a few bounces say little: no verdict

    @classmethod
    def from_settings(cls, settings: Any) -> HealthLimits:
        return cls(settings.pause_bounce_rate, settings.pause_complaint_rate, settings.health_min_sent)


def verdict(limits: HealthLimits, *, sent: int, bounced: int, complained: int) -> str | None:
    """Why a campaign with these counts must pause, or None while it is healthy."""
    if sent <= 0 or sent < limits.min_sent:
        return None
    if bounced / sent > limits.bounce_rate:
        return (
            f"paused by its bounce rate: {bounced} bounces of {sent} sent ({bounced / sent:.2%}) passed "
            f"NEWSLETTER_PAUSE_BOUNCE_RATE {limits.bounce_rate:.2%}; check the list, then resume or cancel"
        )
    if complained / sent > limits.complaint_rate:
        return (
            f"paused by its complaint rate: {complained} complaints of {sent} sent ({complained / sent:.2%}) "
            f"passed NEWSLETTER_PAUSE_COMPLAINT_RATE {limits.complaint_rate:.2%}; check the content and the "
            "list, then resume or cancel"
        )
    return None
