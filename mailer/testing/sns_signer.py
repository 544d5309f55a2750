"""Sign SNS messages the way AWS does, with keys and certificates made here: for tests, the benchmark and
the demo, which POST signed SES feedback to the webhook without AWS.

``LocalCa`` is a certificate authority made here; it issues each signer's certificate, for
``sns.amazonaws.com`` (the name verification wants) unless told otherwise. As with AWS's certificates, the
issuer is then not the subject, so a verifier that read the wrong one would be caught; and a signer can
have further certificates for its one key (expired, not yet valid, issued to another name) that differ
from the good one in that one respect. The app trusts them only when told to read certificates from a
folder (NEWSLETTER_SNS_CERT_DIR): ``write_certificate`` puts one there under the file name its URL ends
in. Nothing here can make a message the production verifier accepts: that fetches certificates from AWS
over verified TLS.

The string to sign is built here from the AWS guide ("Verifying the signatures of Amazon SNS messages"),
not borrowed from ``mailer.feedback.sns``: messages signed here check the verifier's own, they do not
share its mistakes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from mailer.feedback.sns import NOTIFICATION

__all__ = ["DEFAULT_TOPIC", "LocalCa", "SnsSigner", "default_ca", "sns_host", "string_to_sign"]

DEFAULT_TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"

# the keys signed, in the order signed (Subject only when present), per the AWS guide
_SIGNED_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SIGNED_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
# how AWS Lambda names them in the Sns record of its event
_LAMBDA_NAMES = {
    "SigningCertURL": "SigningCertUrl",
    "UnsubscribeURL": "UnsubscribeUrl",
    "SubscribeURL": "SubscribeUrl",
}


def sns_host(region: str) -> str:
    """SNS's host in ``region``; the China partition's end in .cn."""
    return f"sns.{region}.amazonaws.com" + (".cn" if region.startswith("cn-") else "")


def string_to_sign(fields: Mapping[str, str]) -> bytes:
    """``Key\\nValue\\n`` for each signed key of the message's type that ``fields`` holds, in order."""
    keys = _SIGNED_NOTIFICATION if fields.get("Type") == NOTIFICATION else _SIGNED_CONFIRMATION
    return "".join(f"{key}\n{fields[key]}\n" for key in keys if key in fields).encode("utf-8")


class LocalCa:
    """A certificate authority made here: an RSA key and a self-signed CA certificate, valid 2000 to 2100
    so that it covers every time a test signs at."""

    def __init__(self, name: str = "Newsletter Test CA") -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate_pem = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    def issue(
        self,
        public_key: CertificatePublicKeyTypes,
        *,
        common_name: str | None,
        not_before: dt.datetime,
        not_after: dt.datetime,
    ) -> bytes:
        """A PEM certificate for ``public_key``; ``common_name`` None gives a subject without one."""
        subject = (
            [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
            if common_name is not None
            else [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "No common name")]
        )
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )


@lru_cache(maxsize=1)
def default_ca() -> LocalCa:
    """The process's CA (one key made once), for signers not given one."""
    return LocalCa()


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
        ca: LocalCa | None = None,
    ) -> None:
        start = valid_from or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ca = ca or default_ca()
        self.common_name = common_name
        self.certificate_pem = self.certificate(
            not_before=start, not_after=start + dt.timedelta(days=valid_days)
        )
        self.region = region
        self.cert_url = f"https://{sns_host(region)}/{cert_name}"
        self.cert_name = cert_name

    def certificate(
        self, *, not_before: dt.datetime, not_after: dt.datetime, common_name: str | None = None
    ) -> bytes:
        """Another certificate for this signer's key from its CA, for ``common_name`` or else the signer's
        (``ca.issue`` makes one with no common name)."""
        return self.ca.issue(
            self.key.public_key(),
            common_name=common_name or self.common_name,
            not_before=not_before,
            not_after=not_after,
        )

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
        unsubscribe_url: str | None = None,
        signing_cert_url: str | None = None,
        message_attributes: Mapping[str, str] | None = None,
        lambda_names: bool = False,
        version: str = "1",
    ) -> str:
        """A signed SNS HTTP body (JSON text) carrying ``payload`` (an SES notification, or any text).

        A Notification carries an UnsubscribeURL, as SNS's do; ``message_attributes`` (name -> string
        value) become its MessageAttributes, which no signature covers; ``lambda_names`` names the URL
        keys as AWS Lambda hands a message over (``SigningCertUrl``...), with ``"Subject": null`` when
        there is none.
        """
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
                f"https://{sns_host(self.region)}/?Action=ConfirmSubscription&TopicArn={topic_arn}"
                f"&Token={fields['Token']}"
            )
        else:
            if subscribe_url is not None:
                fields["SubscribeURL"] = subscribe_url
            fields["UnsubscribeURL"] = unsubscribe_url or (
                f"https://{sns_host(self.region)}/?Action=Unsubscribe&SubscriptionArn={topic_arn}:"
                f"{uuid.uuid5(uuid.NAMESPACE_URL, topic_arn)}"
            )
        body: dict[str, Any] = self.sign_fields(fields, version=version)
        if message_attributes:
            body["MessageAttributes"] = {
                name: {"Type": "String", "Value": value} for name, value in message_attributes.items()
            }
        if lambda_names:
            body = {_LAMBDA_NAMES.get(key, key): value for key, value in body.items()}
            body.setdefault("Subject", None)
        return json.dumps(body, ensure_ascii=False)
