"""Amazon SNS HTTP messages: parse the JSON body, verify its AWS signature. No database, no clock.

Verification follows the AWS guide "Verifying the signatures of Amazon SNS messages": the string to sign
is ``Key\\nValue\\n`` for a fixed list of keys in byte order (``Subject`` only when present), signed with
RSA PKCS#1 v1.5 over SHA1 (SignatureVersion 1) or SHA256 (SignatureVersion 2) by the certificate that
``SigningCertURL`` names. That URL must be https on an ``sns.<region>.amazonaws.com`` host, so a forger
cannot point us at a certificate of their own. The certificate comes from an injected source (a callable
``url -> certificate``, sns_hosts.py has them), so verification itself is pure given the certificate and
the time.

A valid signature only proves that *some* AWS account's topic sent the message: anyone can subscribe
our endpoint to a topic of their own. ``SnsVerifier.topic_arns`` restricts the topics we accept.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailer.feedback.sns_hosts import (
    CachedCertificates,
    CertificateSource,
    SnsMessageError,
    SnsSignatureError,
    check_sns_url,
    sns_region,
)

__all__ = [
    "SnsMessage",
    "SnsMessageError",  # raised here, defined with the URL checks in sns_hosts
    "SnsSignatureError",
    "SnsVerifier",
    "canonical_string",
    "certificate_names",
    "parse_sns_message",
    "string_to_sign",
    "verify_signature",
]

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
MESSAGE_TYPES = (NOTIFICATION, SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION)

_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_MAX_BODY = 256 * 1024  # SNS messages are at most 256 KB
_STRING_KEYS = frozenset(
    {*_NOTIFICATION_KEYS, *_CONFIRMATION_KEYS, "SignatureVersion", "Signature", "SigningCertURL",
     "UnsubscribeURL"}
)  # fmt: skip
# AWS Lambda hands SNS messages over with these names (its event's Sns record)
_LAMBDA_NAMES = {
    "SigningCertUrl": "SigningCertURL",
    "UnsubscribeUrl": "UnsubscribeURL",
    "SubscribeUrl": "SubscribeURL",
}


@dataclass(frozen=True)
class SnsMessage:
    type: str  # one of MESSAGE_TYPES
    message_id: str
    topic_arn: str
    message: str  # for SES notifications: the SES JSON, still a string
    timestamp: dt.datetime  # aware, UTC
    signature_version: str  # "1" (SHA1) or "2" (SHA256); checked by verification, not parsing
    signature: str  # base64, as received
    signing_cert_url: str  # checked by verification (check_sns_url), not parsing
    subject: str | None = None
    token: str | None = None  # confirmations only
    subscribe_url: str | None = None  # confirmations only
    unsubscribe_url: str | None = None  # notifications only
    fields: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)  # as received
    raw: str = field(default="", repr=False, compare=False)  # the body as received, for storage


def certificate_names(region: str) -> frozenset[str]:
    """The common names SNS's signing certificate carries for messages of ``region``: sns.amazonaws.com
    for most regions, sns-signing.<region>.amazonaws.com for those opened since 2019, and partition
    names in China and GovCloud."""
    if region.startswith("cn-"):
        return frozenset({f"sns-{region}.amazonaws.com.cn"})
    if region.startswith("us-gov-"):
        return frozenset({"sns-us-gov-west-1.amazonaws.com"})
    return frozenset({"sns.amazonaws.com", f"sns-signing.{region}.amazonaws.com"})


def parse_sns_message(
    body: str | bytes | Mapping[str, Any], *, message_type_header: str | None = None
) -> SnsMessage:
    """Parse an SNS HTTP POST body (JSON). ``message_type_header`` is ``x-amz-sns-message-type``, if any.

    Checks the shape and the SubscribeURL/UnsubscribeURL hosts; does NOT verify the signature or look at
    the certificate URL (see ``SnsVerifier``), so a file can still be applied explicitly unverified.
    """
    raw, data = _load_json(body)
    if not isinstance(data, dict):
        raise SnsMessageError("SNS message: the body is not a JSON object")
    fields: dict[str, str] = {}
    for name, value in data.items():
        key = _LAMBDA_NAMES.get(str(name), str(name))
        if value is None:
            continue  # "Subject": null is the same as no subject
        if not isinstance(value, str):
            if key in _STRING_KEYS:
                raise SnsMessageError(f"SNS message: field {key} is not a string")
            continue  # MessageAttributes (an object) and other fields no signature covers
        if key in _STRING_KEYS and ("\x00" in value or not _encodable(value)):
            raise SnsMessageError(f"SNS message: field {key} holds a NUL or an unpaired surrogate")
        fields[key] = value

    kind = fields.get("Type")
    if kind not in MESSAGE_TYPES:
        raise SnsMessageError(f"SNS message: Type {kind!r} is not one of {', '.join(MESSAGE_TYPES)}")
    if message_type_header is not None and message_type_header != kind:
        raise SnsMessageError(f"SNS message: Type {kind} differs from header x-amz-sns-message-type")
    required = ["MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion", "Signature"]
    required.append("SigningCertURL")
    if kind != NOTIFICATION:
        required += ["Token", "SubscribeURL"]
    missing = [key for key in required if not fields.get(key)]
    if missing:
        raise SnsMessageError(f"SNS message: missing {', '.join(missing)}")

    if kind != NOTIFICATION:
        check_sns_url(fields["SubscribeURL"], what="SubscribeURL")
    if fields.get("UnsubscribeURL"):
        check_sns_url(fields["UnsubscribeURL"], what="UnsubscribeURL")

    return SnsMessage(
        type=kind,
        message_id=fields["MessageId"],
        topic_arn=fields["TopicArn"],
        message=fields["Message"],
        timestamp=parse_timestamp(fields["Timestamp"], what="SNS message: Timestamp"),
        signature_version=fields["SignatureVersion"],
        signature=fields["Signature"],
        signing_cert_url=fields["SigningCertURL"],
        subject=fields.get("Subject"),
        token=fields.get("Token"),
        subscribe_url=fields.get("SubscribeURL"),
        unsubscribe_url=fields.get("UnsubscribeURL"),
        fields=fields,
        raw=raw,
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def canonical_string(message: SnsMessage) -> bytes:
    """The bytes AWS signed: ``Key\\nValue\\n`` for each signed key present, in the documented order."""
    return string_to_sign(message.fields)


def string_to_sign(fields: Mapping[str, str]) -> bytes:
    """``canonical_string`` of a message's fields as sent (signers, such as mailer.testing.sns_signer)."""
    keys = _NOTIFICATION_KEYS if fields.get("Type") == NOTIFICATION else _CONFIRMATION_KEYS
    out = []
    for key in keys:
        value = fields.get(key)
        if value is None:
            continue  # only Subject may be absent; parse_sns_message checked the others
        out.append(f"{key}\n{value}\n")
    return "".join(out).encode("utf-8")


def verify_signature(message: SnsMessage, certificate: x509.Certificate) -> None:
    """Raise SnsSignatureError unless ``certificate``'s key signed ``message``. Pure."""
    algorithm = _signature_hash(message)
    signature = _signature_bytes(message)
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsSignatureError("SNS message: the signing certificate has no RSA key")
    try:
        key.verify(signature, canonical_string(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise SnsSignatureError(f"SNS message {message.message_id}: the signature does not match") from None


def _signature_hash(message: SnsMessage) -> hashes.HashAlgorithm:
    factory = _HASHES.get(message.signature_version)
    if factory is None:
        raise SnsSignatureError(f"SNS message: SignatureVersion {message.signature_version!r} is not 1 or 2")
    return factory()


def _signature_bytes(message: SnsMessage) -> bytes:
    try:
        return base64.b64decode(message.signature, validate=True)
    except (binascii.Error, ValueError):
        raise SnsSignatureError("SNS message: Signature is not base64") from None


@dataclass(frozen=True)
class SnsVerifier:
    """Everything verification needs but the message and the time.

    ``max_age`` None switches the message-age check off, ``check_validity`` False the certificate's
    validity period: both exist for replaying old messages and for tests with the expired fixture
    certificates, never for live traffic. ``topic_arns`` lists the topics accepted: empty accepts none
    (any AWS account can publish validly signed messages to a topic of its own).
    """

    certificates: CertificateSource
    max_age: dt.timedelta | None = dt.timedelta(hours=1)
    check_validity: bool = True
    topic_arns: Collection[str] = ()
    clock_skew: dt.timedelta = dt.timedelta(minutes=5)

    def verify(self, message: SnsMessage, *, now: dt.datetime) -> None:
        """Raise SnsSignatureError unless ``message`` is authentic, current and from an accepted topic.
        Reads the certificate from ``certificates``, which may fetch it."""
        self._check_message(message, now)
        self._check_certificate(message, self.certificates(message.signing_cert_url), now)

    def verify_held(self, message: SnsMessage, *, now: dt.datetime) -> bool:
        """``verify`` if it needs no I/O (an event loop calls this): True once the message is verified;
        False, after every check that needs no certificate, when the certificate must be fetched first
        (``verify`` does it, away from the loop): the source holds none for the URL, or is not a
        ``CachedCertificates`` (it cannot tell). Raises as ``verify`` does."""
        self._check_message(message, now)
        source = self.certificates
        certificate = (
            source.held(message.signing_cert_url) if isinstance(source, CachedCertificates) else None
        )
        if certificate is None:
            return False
        self._check_certificate(message, certificate, now)
        return True

    def _check_message(self, message: SnsMessage, now: dt.datetime) -> None:
        """What needs no certificate: the topic, the signature's form, the certificate's URL, the age."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if not self.topic_arns:
            raise SnsSignatureError(
                f"SNS message: topic {message.topic_arn} is not accepted: NEWSLETTER_SNS_TOPIC_ARNS lists no "
                "topic (set it to the ARN of the topic SES notifies)"
            )
        if message.topic_arn not in self.topic_arns:
            raise SnsSignatureError(f"SNS message: topic {message.topic_arn} is not one we subscribed to")
        _signature_hash(message)
        _signature_bytes(message)
        check_sns_url(message.signing_cert_url, what="SigningCertURL", pem=True)
        if self.max_age is not None:
            age = now - message.timestamp
            if age > self.max_age:
                raise SnsSignatureError(
                    f"SNS message {message.message_id}: Timestamp {message.timestamp.isoformat()} is older "
                    f"than {self.max_age}"
                )
            if -age > self.clock_skew:
                raise SnsSignatureError(f"SNS message {message.message_id}: Timestamp is in the future")

    def _check_certificate(
        self, message: SnsMessage, certificate: x509.Certificate, now: dt.datetime
    ) -> None:
        """The certificate's dates and name, then the signature."""
        if self.check_validity:
            not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
            if not (not_before <= now <= not_after):
                raise SnsSignatureError(
                    f"SNS message: certificate {message.signing_cert_url} is not valid at {now.isoformat()} "
                    f"(valid {not_before.date()} to {not_after.date()})"
                )
        _check_subject(
            certificate, message.signing_cert_url, sns_region(message.signing_cert_url, what="SigningCertURL")
        )
        verify_signature(message, certificate)


def _check_subject(certificate: x509.Certificate, url: str, region: str) -> None:
    """Whatever a certificate's source (fetched, cached, a local folder), it must be issued to the SNS
    service of the message's region, not merely to some name under amazonaws.com."""
    names = {a.value for a in certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)}
    if not names & certificate_names(region):
        shown = ", ".join(sorted(str(n) for n in names)) or "no common name"
        raise SnsSignatureError(f"SNS message: certificate {url} is issued to {shown}, not the SNS service")


def parse_timestamp(value: str, *, what: str) -> dt.datetime:
    """ISO 8601 as AWS writes it (``2022-04-01T21:24:50.200Z``) -> aware UTC datetime."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise SnsMessageError(f"{what} {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:  # year 1 or 9999 with an offset: no such UTC time
        raise SnsMessageError(f"{what} {value!r} is out of range") from None


def _load_json(body: str | bytes | Mapping[str, Any]) -> tuple[str, Any]:
    if isinstance(body, Mapping):
        return json.dumps(body, ensure_ascii=False), dict(body)
    if len(body) > _MAX_BODY:
        raise SnsMessageError(f"SNS message: the body is larger than {_MAX_BODY} bytes")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SnsMessageError("SNS message: the body is not UTF-8") from None
    try:
        return body, json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:  # which of two values would count is not for a parser to guess
        raise SnsMessageError(f"SNS message: the key {exc.args[0]!r} appears twice") from None
    except (ValueError, RecursionError):
        raise SnsMessageError("SNS message: the body is not JSON") from None


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen or _LAMBDA_NAMES.get(key, key) in seen:
            raise _DuplicateKey(key)
        seen[key] = value
        seen.setdefault(_LAMBDA_NAMES.get(key, key), value)
    return {key: value for key, value in pairs}
