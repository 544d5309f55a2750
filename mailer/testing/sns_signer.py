"""Sign SNS messages the way AWS does, with a key and certificate made here: for tests, the benchmark and the
demo, which POST signed SES feedback to the webhook without AWS.

The certificate is self-signed for ``sns.amazonaws.com`` (the name verification wants). The app trusts it
only when told to read certificates from a folder (NEWSLETTER_SNS_CERT_DIR): ``write_certificate`` puts it
there under the file name its URL ends in. Nothing here can make a message the production verifier
accepts: that fetches certificates from AWS over verified TLS.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from mailer.feedback.sns import NOTIFICATION, string_to_sign

__all__ = ["SnsSigner"]

DEFAULT_TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"


class SnsSigner:
    """A signing key and its certificate; ``envelope`` wraps a payload as a signed SNS message."""

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        common_name: str = "sns.amazonaws.com",
        valid_from: dt.datetime | None = None,
        valid_days: int = 365,
        cert_name: str = "SimpleNotificationService-local.pem",
    ) -> None:
        start = valid_from or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.certificate_pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=valid_days))
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        self.region = region
        self.cert_url = f"https://sns.{region}.amazonaws.com/{cert_name}"
        self.cert_name = cert_name

    def write_certificate(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.cert_name
        path.write_bytes(self.certificate_pem)
        return path

    def sign_fields(self, fields: Mapping[str, str], *, version: str = "1") -> dict[str, str]:
        """``fields`` plus SignatureVersion and Signature (over whatever they hold, URLs included)."""
        unsigned = {**fields, "SignatureVersion": version}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 (SNS v1 is SHA1)
        signature = self.key.sign(string_to_sign(unsigned), padding.PKCS1v15(), algorithm)
        return {**unsigned, "Signature": base64.b64encode(signature).decode()}

    def envelope(
        self,
        payload: str | Mapping[str, Any],
        *,
        kind: str = NOTIFICATION,
        topic_arn: str = DEFAULT_TOPIC,
        message_id: str | None = None,
        timestamp: dt.datetime | None = None,
        subject: str | None = None,
        subscribe_url: str | None = None,
        signing_cert_url: str | None = None,
        version: str = "1",
    ) -> str:
        """A signed SNS HTTP body (JSON text) carrying ``payload`` (an SES notification, or any text)."""
        message = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        moment = (timestamp or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        fields = {
            "Type": kind,
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic_arn,
            "Message": message,
            "Timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "SigningCertURL": signing_cert_url or self.cert_url,
        }
        if subject is not None:
            fields["Subject"] = subject
        if kind != NOTIFICATION:
            fields["Token"] = uuid.uuid4().hex
            fields["SubscribeURL"] = subscribe_url or (
                f"https://sns.{self.region}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic_arn}"
                f"&Token={fields['Token']}"
            )
        elif subscribe_url is not None:
            fields["SubscribeURL"] = subscribe_url
        return json.dumps(self.sign_fields(fields, version=version), ensure_ascii=False)
