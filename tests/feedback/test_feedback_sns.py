"""SNS parsing and signature verification against real AWS-signed messages.

Fixtures (shared/fixtures/sns, see its README for sources and licences): four messages signed by AWS
(django-ses tests, aws-sdk-ruby and aws-sdk-net specs) with the certificates their SigningCertURL names,
and the AWS developer guide's unsigned HTTP examples. The fixture certificates expired years ago, so the
tests that verify those messages switch the expiry and age checks off (or verify "as of" the message's
own time); the checks themselves are tested with a certificate made here.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from support.paths import SHARED_FIXTURES
from support.sns import split_http

from mailer.feedback.sns import (
    CachedCertificates,
    CertificateDirectory,
    SnsMessageError,
    SnsSignatureError,
    SnsVerifier,
    canonical_string,
    certificate_names,
    fetch_certificate_https,
    parse_sns_message,
)

SNS_DIR = SHARED_FIXTURES / "sns"
CERTS = SNS_DIR / "certs"
SIGNED = sorted(SNS_DIR.glob("*.json"))
UNSIGNED = sorted((SNS_DIR / "http-examples-unsigned").glob("*-json-format.http"))
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def fixture_certs() -> CachedCertificates:
    return CachedCertificates(CertificateDirectory(CERTS))


# the topics of the real signed messages: the allow-list accepts nothing else
FIXTURE_TOPICS = frozenset(
    {
        "arn:aws:sns:us-east-1:364852123998:test-email",
        "arn:aws:sns:us-east-2:295079676684:publish-and-verify-62674b1d-4295-426b-88e7-5fb75652a04e",
        "arn:aws:sns:us-east-1:246796806071:snsNetTest",
    }
)
OUR_TOPIC = "arn:aws:sns:eu-west-1:1:feedback"


def lenient(certs: CachedCertificates | None = None) -> SnsVerifier:
    """Signature only: the fixture certificates and messages are years old."""
    return SnsVerifier(
        certs or fixture_certs(), max_age=None, check_validity=False, topic_arns=FIXTURE_TOPICS
    )


def test_fixture_set_is_complete() -> None:
    assert len(SIGNED) == 4 and len(UNSIGNED) == 3


@pytest.mark.parametrize("path", SIGNED, ids=lambda p: p.name)
def test_real_signed_messages_verify_with_their_certificate(path: Path) -> None:
    message = parse_sns_message(path.read_bytes())
    lenient().verify(message, now=NOW)


@pytest.mark.parametrize("path", SIGNED, ids=lambda p: p.name)
def test_real_messages_pass_every_check_as_of_their_own_time(path: Path) -> None:
    message = parse_sns_message(path.read_text())
    SnsVerifier(fixture_certs(), topic_arns=FIXTURE_TOPICS).verify(
        message, now=message.timestamp + dt.timedelta(seconds=2)
    )


@pytest.mark.parametrize("path", SIGNED, ids=lambda p: p.name)
def test_real_messages_fail_today_for_age_and_for_expired_certificate(path: Path) -> None:
    message = parse_sns_message(path.read_text())
    with pytest.raises(SnsSignatureError, match="older than"):
        SnsVerifier(fixture_certs(), topic_arns=FIXTURE_TOPICS).verify(message, now=NOW)
    with pytest.raises(SnsSignatureError, match="not valid at"):
        SnsVerifier(fixture_certs(), max_age=None, topic_arns=FIXTURE_TOPICS).verify(message, now=NOW)


def test_parsed_fields_of_the_bounce_notification() -> None:
    message = parse_sns_message((SNS_DIR / "notification-ses-bounce-no-subject-sigv1.json").read_text())
    assert message.type == "Notification"
    assert message.message_id == "71a6b82e-0f1a-58db-b902-e2ef60f87541"
    assert message.subject is None
    assert message.timestamp == dt.datetime(2022, 4, 1, 21, 24, 50, 200000, tzinfo=dt.UTC)
    assert json.loads(message.message)["notificationType"] == "Bounce"
    assert canonical_string(message).startswith(b"Message\n{")
    assert b"\nSubject\n" not in canonical_string(message)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Message", "Hello world!"),
        ("MessageId", "17dea24b-55c2-540b-8362-f916557af766"),
        ("Timestamp", "2022-07-28T21:24:09.324Z"),
        ("Subject", "injected"),
        ("SignatureVersion", "1"),
        ("Signature", "QUJD"),
    ],
)
def test_any_tampered_field_fails(field: str, value: str) -> None:
    data = json.loads((SNS_DIR / "notification-sigv2-sha256.json").read_text())
    data[field] = value
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        lenient().verify(parse_sns_message(json.dumps(data)), now=NOW)


@pytest.mark.parametrize(("version", "signature"), [("3", None), ("", None), ("1", "not base64!")])
def test_unsupported_version_or_garbled_signature_fails(version: str, signature: str | None) -> None:
    data = json.loads((SNS_DIR / "notification-sigv2-sha256.json").read_text())
    data["SignatureVersion"] = version
    data["Signature"] = signature or data["Signature"]
    with pytest.raises(SnsMessageError):
        lenient().verify(parse_sns_message(data), now=NOW)


def test_tampered_signature_bytes_fail() -> None:
    data = json.loads((SNS_DIR / "subscriptionconfirmation-sigv1.json").read_text())
    sig = bytearray(base64.b64decode(data["Signature"]))
    sig[10] ^= 1
    data["Signature"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(SnsSignatureError):
        lenient().verify(parse_sns_message(data), now=NOW)


def test_signature_from_the_other_certificate_fails() -> None:
    data = json.loads((SNS_DIR / "subscriptionconfirmation-sigv1.json").read_text())
    other = "SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
    data["SigningCertURL"] = f"https://sns.us-east-1.amazonaws.com/{other}"
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        lenient().verify(parse_sns_message(data), now=NOW)


@pytest.mark.parametrize("path", UNSIGNED, ids=lambda p: p.name)
def test_unsigned_documentation_examples_fail(path: Path) -> None:
    headers, body = split_http(path)
    # Even a source that hands out a genuine AWS certificate for any URL must not make them pass.
    genuine = CertificateDirectory(CERTS)("x/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem")
    certs = CachedCertificates(lambda _url: genuine)
    with pytest.raises(SnsSignatureError):
        message = parse_sns_message(body, message_type_header=headers["x-amz-sns-message-type"])
        lenient(certs).verify(message, now=NOW)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem.txt",
        "https://s3.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem",
        "https://SNS.US-EAST-1.AMAZONAWS.COM.evil/x.pem",
    ],
)
def test_wrong_certificate_url_fails_before_any_fetch(url: str) -> None:
    data = json.loads((SNS_DIR / "notification-ses-bounce-no-subject-sigv1.json").read_text())
    data["SigningCertURL"] = url
    fetched: list[str] = []
    certs = CachedCertificates(lambda u: fetched.append(u) or CertificateDirectory(CERTS)(u))
    with pytest.raises(SnsSignatureError, match="SigningCertURL"):
        lenient(certs).verify(parse_sns_message(data), now=NOW)
    assert fetched == []


def test_china_region_certificate_url_is_accepted() -> None:
    data = json.loads((SNS_DIR / "notification-sigv2-sha256.json").read_text())
    data["SigningCertURL"] = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem"
    with pytest.raises(SnsSignatureError, match="no certificate SimpleNotificationService-x.pem"):
        lenient().verify(parse_sns_message(data), now=NOW)  # passed the URL check, then fetched


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "not a JSON object"),
        (b'{"Type": "Notification"}', "missing MessageId"),
        (b'{"Type": "Other"}', "Type 'Other'"),
        (b'{"Type": 5}', "field Type is not a string"),
    ],
)
def test_malformed_bodies_are_one_line_input_errors(body: bytes, match: str) -> None:
    with pytest.raises(SnsMessageError, match=match) as info:
        parse_sns_message(body)
    assert "\n" not in str(info.value)


def test_message_type_header_must_agree_with_the_body() -> None:
    with pytest.raises(SnsMessageError, match="x-amz-sns-message-type"):
        parse_sns_message(
            (SNS_DIR / "subscriptionconfirmation-sigv1.json").read_text(), message_type_header="Notification"
        )


def test_certificates_are_fetched_once_per_url() -> None:
    calls: list[str] = []
    directory = CertificateDirectory(CERTS)

    def fetch(url: str) -> bytes:
        calls.append(url)
        return directory(url)

    certs = CachedCertificates(fetch)
    verifier = lenient(certs)
    for _ in range(3):
        for path in SIGNED:
            verifier.verify(parse_sns_message(path.read_text()), now=NOW)
    assert len(calls) == 3  # two us-east-1 certificates + the us-east-2 URL of the SHA256 message


# --- the time and topic checks, with a certificate made here ------------------------------------------


class Signer:
    """A throwaway CA-less certificate for sns.amazonaws.com and a key to sign messages with."""

    url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"

    def __init__(
        self, not_before: dt.datetime, not_after: dt.datetime, cn: str = "sns.amazonaws.com"
    ) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        self.pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    def certificates(self) -> CachedCertificates:
        return CachedCertificates(lambda _url: self.pem)

    def sign(self, timestamp: dt.datetime, topic: str = "arn:aws:sns:eu-west-1:1:feedback") -> str:
        fields = {
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": topic,
            "Message": '{"notificationType":"Bounce"}',
            "Timestamp": timestamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "SignatureVersion": "2",
            "SigningCertURL": self.url,
        }
        unsigned = parse_sns_message({**fields, "Signature": "AAAA"})
        signature = self.key.sign(canonical_string(unsigned), padding.PKCS1v15(), hashes.SHA256())
        return json.dumps({**fields, "Signature": base64.b64encode(signature).decode()})


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(NOW - dt.timedelta(days=30), NOW + dt.timedelta(days=30))


def test_fresh_message_with_valid_certificate_passes_all_checks(signer: Signer) -> None:
    verifier = SnsVerifier(signer.certificates(), topic_arns={OUR_TOPIC})
    verifier.verify(parse_sns_message(signer.sign(NOW - dt.timedelta(minutes=5))), now=NOW)


def test_old_message_fails_the_age_check(signer: Signer) -> None:
    message = parse_sns_message(signer.sign(NOW - dt.timedelta(hours=2)))
    with pytest.raises(SnsSignatureError, match="older than"):
        SnsVerifier(signer.certificates(), topic_arns={OUR_TOPIC}).verify(message, now=NOW)
    SnsVerifier(signer.certificates(), max_age=dt.timedelta(hours=3), topic_arns={OUR_TOPIC}).verify(
        message, now=NOW
    )


def test_message_from_the_future_fails(signer: Signer) -> None:
    message = parse_sns_message(signer.sign(NOW + dt.timedelta(hours=1)))
    with pytest.raises(SnsSignatureError, match="future"):
        SnsVerifier(signer.certificates(), topic_arns={OUR_TOPIC}).verify(message, now=NOW)


def test_expired_and_not_yet_valid_certificates_fail() -> None:
    for start, end in [
        (NOW - dt.timedelta(days=60), NOW - dt.timedelta(days=1)),
        (NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=9)),
    ]:
        signer = Signer(start, end)
        with pytest.raises(SnsSignatureError, match="not valid at"):
            SnsVerifier(signer.certificates(), topic_arns={OUR_TOPIC}).verify(
                parse_sns_message(signer.sign(NOW)), now=NOW
            )


def test_topic_outside_the_allowed_list_fails(signer: Signer) -> None:
    message = parse_sns_message(signer.sign(NOW, topic="arn:aws:sns:eu-west-1:666:someone-elses"))
    with pytest.raises(SnsSignatureError, match="topic"):
        SnsVerifier(signer.certificates(), topic_arns={OUR_TOPIC}).verify(message, now=NOW)


@pytest.mark.parametrize("cn", ["evil.example", "attacker.amazonaws.com", "sns.amazonaws.com.evil.example"])
def test_a_certificate_not_issued_to_the_sns_service_fails(cn: str) -> None:
    signer = Signer(NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1), cn=cn)
    with pytest.raises(SnsSignatureError, match=f"issued to {re.escape(cn)}, not the SNS service"):
        SnsVerifier(signer.certificates(), topic_arns={OUR_TOPIC}).verify(
            parse_sns_message(signer.sign(NOW)), now=NOW
        )


def test_certificate_names_follow_the_partition_and_the_region() -> None:
    signer = Signer(
        NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1), cn="sns-signing.eu-west-1.amazonaws.com"
    )
    SnsVerifier(signer.certificates(), topic_arns={OUR_TOPIC}).verify(
        parse_sns_message(signer.sign(NOW)), now=NOW
    )
    assert certificate_names("cn-north-1") == {"sns-cn-north-1.amazonaws.com.cn"}
    assert "sns.amazonaws.com" not in certificate_names("us-gov-west-1")


def test_with_the_allow_list_empty_a_genuine_signed_message_is_refused() -> None:
    message = parse_sns_message((SNS_DIR / "notification-ses-bounce-no-subject-sigv1.json").read_text())
    lenient().verify(message, now=NOW)  # genuine: it verifies when its topic is listed
    empty = SnsVerifier(fixture_certs(), max_age=None, check_validity=False, topic_arns=())
    with pytest.raises(SnsSignatureError, match="NEWSLETTER_SNS_TOPIC_ARNS lists no topic"):
        empty.verify(message, now=NOW)


@pytest.mark.parametrize(
    "host",
    [
        "sns.s3.amazonaws.com",  # S3 bucket hosts: anyone can publish a file there
        "sns.s3-us-west-2.amazonaws.com",
        "sns.s3.us-west-2.amazonaws.com",
        "sns.xx-nowhere-9.amazonaws.com",  # a region SNS does not have
        "sns.us-east-1.amazonaws.com.cn",  # the wrong partition's suffix
        "sns.cn-north-1.amazonaws.com",
        "sns.us-east-1.amazonaws.com:abc",  # a port that is no number
        "sns.us-east-1.amazonaws.com:99999",
        "[sns.us-east-1.amazonaws.com",  # an unclosed IPv6 bracket
    ],
)
def test_certificate_hosts_that_are_not_sns_are_refused_before_any_connection(host: str) -> None:
    url = f"https://{host}/SimpleNotificationService-x.pem"
    data = json.loads((SNS_DIR / "notification-ses-bounce-no-subject-sigv1.json").read_text())
    data["SigningCertURL"] = url
    fetched: list[str] = []
    certs = CachedCertificates(lambda u: fetched.append(u) or b"")
    with pytest.raises(SnsSignatureError, match="not https on an sns"):
        lenient(certs).verify(parse_sns_message(data), now=NOW)
    with pytest.raises(SnsSignatureError, match="not https on an sns"):
        fetch_certificate_https(url)  # the real fetcher refuses before opening anything
    assert fetched == []


def test_messages_with_attributes_and_as_lambda_names_them_verify() -> None:
    data = json.loads((SNS_DIR / "notification-sigv2-sha256.json").read_text())
    data["MessageAttributes"] = {"campaign": {"Type": "String", "Value": "12"}}  # an object, not signed
    lenient().verify(parse_sns_message(data), now=NOW)
    data["SigningCertUrl"] = data.pop("SigningCertURL")  # how AWS Lambda hands a message over
    if "UnsubscribeURL" in data:
        data["UnsubscribeUrl"] = data.pop("UnsubscribeURL")
    lenient().verify(parse_sns_message(data), now=NOW)


def test_naive_now_is_a_programming_error(signer: Signer) -> None:
    with pytest.raises(ValueError):
        SnsVerifier(signer.certificates(), topic_arns={OUR_TOPIC}).verify(
            parse_sns_message(signer.sign(NOW)), now=NOW.replace(tzinfo=None)
        )


SNS_KEYS = st.sampled_from(
    ["Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion", "Signature",
     "SigningCertURL", "Subject", "Token", "SubscribeURL", "UnsubscribeURL"]
)  # fmt: skip
SNS_VALUES = st.none() | st.integers() | st.text(max_size=30) | st.sampled_from(
    ["Notification", "SubscriptionConfirmation", "1", "2", "2022-04-01T21:24:50.200Z", "QUJD",
     "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(SNS_KEYS, SNS_VALUES, max_size=12) | st.binary(max_size=40))
def test_parsing_and_verifying_arbitrary_input_raises_only_sns_errors(
    body: dict[str, object] | bytes,
) -> None:
    try:
        message = parse_sns_message(body if isinstance(body, bytes) else json.dumps(body))
        lenient().verify(message, now=NOW)
    except SnsMessageError as exc:
        assert "\n" not in str(exc)


def test_a_certificate_that_could_not_be_fetched_is_not_fetched_again_at_once() -> None:
    calls = []
    now = [0.0]

    def failing(url: str) -> bytes:
        calls.append(url)
        raise SnsSignatureError(f"cannot fetch {url}")

    certs = CachedCertificates(failing, retry_after=60, clock=lambda: now[0])
    url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123.pem"
    for _ in range(3):
        with pytest.raises(SnsSignatureError):
            certs(url)
    assert calls == [url] and certs.holds(url)
    now[0] = 61.0
    with pytest.raises(SnsSignatureError):
        certs(url)
    assert len(calls) == 2
