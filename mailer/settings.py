"""Every knob of the pipeline, read once from the environment (prefix ``NEWSLETTER_``) or ``.env``.

Nothing else in the code base reads ``os.environ``. The defaults are the embedded mode: an SQLite file and a
file outbox under ``./var``, no broker (tasks run in-process), no Redis needed.
"""

from __future__ import annotations

import importlib.resources
import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from mailer.errors import ConfigurationError


def packaged_templates_dir() -> Path:
    """The templates installed with the package (the source tree's ``templates/`` as ``mailer.templates``)."""
    folder = importlib.resources.files("mailer.templates")
    if not isinstance(folder, Path):  # a zipped install: Jinja2 and the registry need real files
        raise RuntimeError("the package must be installed as files, not zipped: templates are read from disk")
    return folder


TEMPLATES_DIR = packaged_templates_dir()
DEFAULT_SECRET_KEY = "change-me-in-production"  # published: fine for the embedded demo, refused for mail


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NEWSLETTER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- the newsletter's identity (brand) -------------------------------------------------------
    name: str = Field("Community Newsletter", description="Newsletter name shown in the header and From")
    sender_name: str = Field("Community Newsletter", description="Display name of the From address")
    sender_address: str = Field("newsletter@example.org", description="From address (verified in SES)")
    reply_to: str | None = Field(None, description="Reply-To address; none means replies go to From")
    postal_address: str = Field(
        "Example Community, 1 Example Street, Example City",
        description="Postal line printed in every footer (CAN-SPAM and friends ask for one)",
    )
    base_url: str = Field(
        "http://127.0.0.1:8000", description="Public URL of the web side; links in emails start with it"
    )
    default_lang: str = Field("zh", description="Language of an issue whose front matter names none")
    list_id: str | None = Field(None, description="List-Id header; default: a name on the sender domain")

    # --- data ------------------------------------------------------------------------------------
    data_dir: Path = Field(Path("var"), description="Folder for the SQLite file, the outbox and reports")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; none means an SQLite file in data_dir (postgresql+psycopg://...)"
    )
    templates_dir: Path = Field(
        TEMPLATES_DIR, description="Folder of the email and web templates; default: the packaged ones"
    )
    topics_file: Path | None = Field(
        None,
        description="The topic registry data file; none: topics.yaml in templates_dir, else the packaged one",
    )
    secret_key: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_SECRET_KEY],
        description="Keys that sign links (unsubscribe, preferences, confirm, view), comma-separated, newest "
        "first: the first signs, every one is accepted when reading (to rotate, put a new key first and "
        "keep the old ones while old links should work). The default is refused for real mail",
    )

    # --- sending ---------------------------------------------------------------------------------
    broker_url: str | None = Field(
        None, description="Celery broker (redis://...); none runs the tasks in-process (embedded mode)"
    )
    redis_url: str | None = Field(
        None, description="Redis for the shared rate limiter; defaults to broker_url when that is Redis"
    )
    redis_prefix: str = Field("newsletter", description="Prefix of every Redis key this project writes")
    transport: Literal["file", "ses", "smtp"] = Field("file", description="How messages leave")
    outbox_dir: Path | None = Field(None, description="Folder of .eml files for the file transport")
    rate_burst: int = Field(10, description="Token bucket size of each transport's rate limiter")
    batch_size: int = Field(100, description="Ledger rows per Celery batch task")
    fill_chunk: int = Field(
        1000,
        description="Audience rows a ledger fill inserts and commits at a time (a resume goes on from there)",
    )
    max_consecutive_failures: int = Field(50, description="A campaign pauses itself after this many")
    lease_seconds: int = Field(600, description="Rows left in 'sending' longer than this are reaped")
    on_lost_send: Literal["resend", "unknown"] = Field(
        "unknown", description="What reaping does with a row a killed worker left in 'sending'"
    )

    ses_region: str = Field("us-east-1", description="SES region")
    ses_endpoint_url: str | None = Field(None, description="SES endpoint override (moto, a local sink)")
    ses_configuration_set: str | None = Field(None, description="SES configuration set for event publishing")
    ses_send_rate: float | None = Field(
        None,
        description="SES messages per second for all workers together; none asks SES (the account's "
        "MaxSendRate); lower it to leave room for other senders on the account",
    )

    smtp_host: str = Field("localhost", description="SMTP server host")
    smtp_port: int = Field(25, description="SMTP server port")
    smtp_security: Literal["none", "starttls", "tls"] = Field("none", description="SMTP connection security")
    smtp_username: str | None = Field(None, description="SMTP auth user")
    smtp_password: str | None = Field(None, description="SMTP auth password")
    smtp_send_rate: float | None = Field(
        None, description="SMTP messages per second for all workers together; none: no limit"
    )
    file_send_rate: float | None = Field(
        None, description="File-outbox messages per second for all workers together; none: no limit"
    )

    # --- subscribers -----------------------------------------------------------------------------
    soft_bounce_limit: int = Field(3, description="Soft bounces in a row before an address is suppressed")
    confirm_rate_limit_seconds: int = Field(
        3600, description="At most one confirmation email per address in this many seconds"
    )

    # --- feedback (SES bounces and complaints through SNS) -------------------------------------------
    sns_topic_arns: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="SNS topic ARNs whose messages are accepted, comma-separated; empty accepts none",
    )
    sns_max_age_seconds: int = Field(
        3600,
        description="Refuse SNS messages whose Timestamp is older than this (replay protection); 0 switches "
        "the check off (replaying recorded messages in tests, never for live traffic)",
    )
    sns_cert_dir: Path | None = Field(
        None,
        description="Read SNS signing certificates from this folder (file name: the URL's last path "
        "segment) instead of fetching them over HTTPS: pinned certificates, or no outbound access",
    )
    sns_check_certificate_dates: bool = Field(
        True, description="Refuse certificates outside their validity period; off only to replay old fixtures"
    )
    sns_confirm_subscriptions: bool = Field(
        True,
        description="Confirm a verified SubscriptionConfirmation by fetching its SubscribeURL (an SNS host "
        "only); off: the URL is logged for an operator to open",
    )

    # --- health of a campaign (SES reviews accounts near 5 % bounces and 0.1 % complaints) ------------
    pause_bounce_rate: float = Field(
        0.05, description="A sending campaign pauses itself when its bounces pass this share of its sent"
    )
    pause_complaint_rate: float = Field(
        0.001, description="A sending campaign pauses itself when its complaints pass this share of its sent"
    )
    health_min_sent: int = Field(
        500, description="Sent messages a campaign needs before its bounce and complaint rates can pause it"
    )

    # --- the web side (mailer/web) -------------------------------------------------------------------
    webhook_path: str = Field("/webhooks/ses", description="Path of the SNS webhook for SES notifications")
    web_threads: int = Field(
        4,
        description="Requests one web process works on at once (its thread pool: the routes are "
        "synchronous); more only wait for the GIL and the database pool: add processes (--workers)",
    )
    max_body_bytes: int = Field(
        300_000, description="Largest request body the web app reads (SNS messages are at most 256 KB)"
    )
    signup_ip_limit: int = Field(
        20,
        description="Signups and link requests one client IP may make per hour (per web process when there "
        "is no Redis)",
    )
    link_rate_limit_seconds: int = Field(
        3600, description="At most one 'send me my preferences link' email per address in this many seconds"
    )

    # --- admins: the dashboard (/admin/) and the admin API (/api/) -----------------------------------
    admin_session_hours: float = Field(
        12, description="How long an admin's dashboard login lasts before the password is asked again"
    )
    admin_login_limit: int = Field(
        10,
        description="Login attempts one client IP, and one admin name, may make per 15 minutes (against "
        "password guessing)",
    )
    admin_upload_bytes: int = Field(
        50_000_000, description="Largest upload to the admin API and dashboard (CSV imports, issues)"
    )

    # --- observability: metrics and logs (README "Metrics and logs") ------------------------------------
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: every process logs as it always did; json: one JSON object a line on stderr (CLI, "
        "web, workers), with campaign_id, delivery_id, message_id ... as fields where they are known",
    )
    metrics_token: str | None = Field(
        None,
        description="Bearer token GET /metrics requires (Prometheus: authorization credentials); when set, "
        "from every client. Unset: only clients in metrics_networks reaching the app directly may read it",
    )
    metrics_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="Client networks that may read GET /metrics without a token while metrics_token is "
        "unset, comma-separated; requests carrying proxy headers (Forwarded, X-Forwarded-For, X-Real-IP) "
        "never count as theirs. Empty: nobody",
    )
    worker_metrics_port: int = Field(
        0,
        description="First port of the workers' metrics (Prometheus text at /metrics): each worker process "
        "takes the first free one from here up (several on one machine: port, port+1, ...); 0: none",
    )
    worker_metrics_host: str = Field(
        "127.0.0.1",
        description="Address the workers' metrics ports listen on; 0.0.0.0 for a Prometheus on another "
        "machine or container (they show counts only)",
    )

    @field_validator("secret_key", "sns_topic_arns", "metrics_networks", mode="before")
    @classmethod
    def _a_list(cls, value: object) -> object:
        """The form an operator types (``a,b``) or a JSON list (``["a", "b"]``)."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("secret_key")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        if not keys or any(not key.strip() for key in keys):
            raise ValueError("give at least one key, and no empty one")
        return keys

    @field_validator("metrics_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        import ipaddress

        return [str(ipaddress.ip_network(net, strict=False)) for net in networks]

    @property
    def signing_key(self) -> str:
        """The key links are signed with (the newest)."""
        return self.secret_key[0]

    @property
    def embedded(self) -> bool:
        """The embedded mode: file outbox, no broker. The only mode that may keep the published key."""
        return self.transport == "file" and not self.broker_url

    def require_own_secret(self, use: str) -> None:
        """Refuse the default key for anything real: links signed with a published key can be forged."""
        if DEFAULT_SECRET_KEY in self.secret_key:
            raise ConfigurationError(
                f"NEWSLETTER_SECRET_KEY is still the default; {use} needs a key of your own "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'newsletter.db').as_posix()}"

    @property
    def registry_file(self) -> Path:
        if self.topics_file is not None:
            return self.topics_file
        beside_templates = self.templates_dir / "topics.yaml"
        return beside_templates if beside_templates.is_file() else TEMPLATES_DIR / "topics.yaml"

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def resolved_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2] or "localhost"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests build their own ``Settings(...)`` instead.
    A malformed value is a ConfigurationError whose one line names the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe(exc)) from None
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        raise ConfigurationError(" ".join(str(exc).split())) from None


def describe(exc: ValidationError) -> str:
    """The first problem of a settings validation error, naming the environment variable."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    variable = f"NEWSLETTER_{field.upper()}" if field else "a setting"
    problem = first["msg"]
    value = first.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float) and len(str(value)) <= 80 else ""
    more = f"; and {len(exc.errors()) - 1} more" if len(exc.errors()) > 1 else ""
    return f"{variable}: {problem}{shown}{more}"
