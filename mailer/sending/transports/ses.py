"""Amazon SES v2 transport: ``sesv2.send_email`` with Raw content, one client per worker process.

botocore's own retries are off (one attempt): the sending loop owns backoff, so a throttled call is
retried after the shared rate limiter, never behind its back. SES errors are translated in one table
(``classify``) into the transport error classes of base.py.
"""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from mailer.errors import TransportError
from mailer.sending.transports.base import (
    AccountPausedError,
    OutgoingMessage,
    RejectedError,
    TemporaryError,
    ThrottledError,
    TransportResult,
    register,
)
from mailer.settings import Settings

__all__ = ["SesTransport", "classify", "make_client"]

_THROTTLED_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException"}
_PAUSED_CODES = {
    "AccountSuspendedException",
    "SendingPausedException",
    "AccountSendingPausedException",
    "ConfigurationSetSendingPausedException",
    "MailFromDomainNotVerifiedException",
    "MailFromDomainNotVerified",
}
_REJECTED_CODES = {"MessageRejected", "BadRequestException", "InvalidParameterValue", "NotFoundException"}
_QUOTA_TEXT = ("daily message quota", "daily sending quota", "quota exceeded")


def classify(code: str, message: str, http_status: int | None) -> type[TransportError]:
    """The transport error class for an SES error response (pure)."""
    text = message.lower()
    if any(marker in text for marker in _QUOTA_TEXT):
        return AccountPausedError  # SES v1 reports the daily quota as "Throttling"; it is not a rate
    if code in _THROTTLED_CODES or "maximum sending rate exceeded" in text or http_status == 429:
        return ThrottledError
    if code in _PAUSED_CODES or code == "LimitExceededException":
        return AccountPausedError
    if code in _REJECTED_CODES:
        return RejectedError
    if http_status is not None and 400 <= http_status < 500:
        return RejectedError
    return TemporaryError


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("newsletter-pipeline")
    except importlib.metadata.PackageNotFoundError:
        version = "dev"
    return f"newsletter-pipeline/{version} Python/{platform.python_version()}"  # boto3 adds Botocore/x


def make_client(settings: Settings, service: str = "sesv2") -> Any:
    config = Config(
        # a fixed User-Agent: left unset, botocore rebuilds it from ~20 components twice per call, about
        # a tenth of the CPU of a send_email
        user_agent=_user_agent(),
        retries={"total_max_attempts": 1, "mode": "standard"},
        parameter_validation=False,  # the request is ours and always the same shape; saves CPU per send
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=4,
        tcp_keepalive=True,
    )
    return boto3.session.Session().client(
        service, region_name=settings.ses_region, endpoint_url=settings.ses_endpoint_url, config=config
    )


@register("ses")
class SesTransport:
    name = "ses"

    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        self.settings = settings
        self.client = client if client is not None else make_client(settings)
        self.configuration_set = settings.ses_configuration_set

    def send(self, message: OutgoingMessage) -> TransportResult:
        request: dict[str, Any] = {
            "FromEmailAddress": message.sender,
            "Destination": {"ToAddresses": list(message.recipients)},
            "Content": {"Raw": {"Data": message.raw}},
        }
        tags = dict(message.tags)
        if message.campaign_id is not None:
            tags.setdefault("campaign", str(message.campaign_id))
        if tags:
            request["EmailTags"] = [{"Name": k, "Value": v} for k, v in tags.items()]
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            response = self.client.send_email(**request)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code, text = str(error.get("Code", "")), str(error.get("Message", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            cause = code or f"http-{status}"
            raise classify(code, text, status)(f"SES {cause}: {text}".strip(), code=cause) from exc
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            # connection refused/reset, timeouts, DNS: the request may or may not have reached SES
            raise TemporaryError(f"SES unreachable: {exc}", code="network") from exc
        return TransportResult(message_id=str(response["MessageId"]))

    def max_rate(self) -> float | None:
        """``ses_send_rate`` when set, else the account's MaxSendRate: sesv2 GetAccount, or SES v1
        GetSendQuota where v2 is unavailable (older endpoints, some SES-compatible services)."""
        if self.settings.ses_send_rate is not None:
            return self.settings.ses_send_rate if self.settings.ses_send_rate > 0 else None
        try:
            return float(self.client.get_account()["SendQuota"]["MaxSendRate"])
        except (botocore.exceptions.ClientError, KeyError):
            quota = make_client(self.settings, "ses").get_send_quota()
            return float(quota["MaxSendRate"])

    def close(self) -> None:
        self.client.close()
