"""SNS parsing and signature verification, with messages and certificates made here.

Messages are signed at test time by mailer.testing.sns_signer (its keys hold certificates from its local
CA) in both signature versions: notifications with and without Subject, SES payloads and plain text,
MessageAttributes, the names AWS Lambda uses, CRLF in Message, subscription and unsubscribe
confirmations. Changed copies of them, certificates expired, not yet valid or issued to another name,
and requests written like the AWS guide's unsigned examples must fail. The string to sign is pinned
here byte for byte from the AWS guide. tests/real_world/test_real_sns.py replays the same checks on
AWS-signed messages when ../shared/fixtures holds them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ses
from support.sns import (
    DOCUMENTED_KINDS,
    Kind,
    decoyed_certificate_url,
    documentation_example,
    split_http_text,
    tampered,
)

from mailer.feedback.sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    SnsMessageError,
    SnsSignatureError,
    SnsVerifier,
    canonical_string,
    certificate_names,
    parse_sns_message,
)
from mailer.feedback.sns_hosts import CachedCertificates, fetch_certificate_https
from mailer.testing.sns_signer import DEFAULT_TOPIC, LocalCa, SnsSigner

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
SENT = NOW - dt.timedelta(minutes=1)
TOPIC = DEFAULT_TOPIC
EVENT_SUBJECT = "Amazon SES Email Event Notification"

# every form of message the signer makes: name -> envelope arguments
MESSAGES: dict[str, dict[str, Any]] = {
    "notification-v1-ses-bounce-no-subject": {"payload": ses.bounce("jane@example.com")},
    "notification-v1-ses-event-complaint-subject": {
        "payload": json.dumps(ses.complaint("richard@example.com", form="event")) + "\n",
        "subject": EVENT_SUBJECT,
    },
    "notification-v2-text": {"payload": "Hello world", "version": "2"},
    "notification-v2-crlf-message": {"payload": "line one\r\nline two\r\n", "version": "2"},
    "notification-v1-message-attributes": {
        "payload": ses.delivery("jane@example.com"),
        "message_attributes": {"campaign": "12", "segment": "nova"},
    },
    "notification-v2-lambda-names": {
        "payload": ses.bounce("jane@example.com"),
        "lambda_names": True,
        "message_attributes": {"campaign": "12"},
        "version": "2",
    },
    "subscriptionconfirmation-v1": {"payload": "confirm", "kind": SUBSCRIPTION_CONFIRMATION},
    "subscriptionconfirmation-v2": {"payload": "confirm", "kind": SUBSCRIPTION_CONFIRMATION, "version": "2"},
    "unsubscribeconfirmation-v1": {"payload": "deactivated", "kind": UNSUBSCRIBE_CONFIRMATION},
}


def new_signer(**options: Any) -> SnsSigner:
    """A signer whose certificate is valid at NOW."""
    return SnsSigner(**{"valid_from": NOW - dt.timedelta(days=30), "valid_days": 60, **options})


@pytest.fixture(scope="module")
def signer() -> SnsSigner:
    return new_signer()


def serving(pem: bytes) -> CachedCertificates:
    """A certificate source handing out ``pem`` for any URL."""
    return CachedCertificates(lambda _url: pem)


def checking(signer: SnsSigner, **options: Any) -> SnsVerifier:
    """Every check on (age, certificate dates, names, topic), with the signer's certificate."""
    return SnsVerifier(serving(signer.certificate_pem), **{"topic_arns": {TOPIC}, **options})


def signed(signer: SnsSigner, name: str, *, at: dt.datetime = SENT, **changes: Any) -> str:
    return signer.envelope(**{**MESSAGES[name], "timestamp": at, **changes})


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_messages_signed_here_pass_every_check(signer: SnsSigner, name: str) -> None:
    message = parse_sns_message(signed(signer, name))
    checking(signer).verify(message, now=NOW)
    assert message.signature_version == MESSAGES[name].get("version", "1")


@pytest.mark.parametrize("version", ["1", "2"])
def test_old_messages_pass_as_of_their_time_and_fail_today_for_age_and_certificate(version: str) -> None:
    """What replaying a recorded message needs: every check passes as of its own time; today the age
    check refuses it, and with that check off the certificate's expiry does."""
    then = dt.datetime(2022, 4, 1, 21, 24, 50, 200000, tzinfo=dt.UTC)
    old = SnsSigner(valid_from=then - dt.timedelta(days=100), valid_days=365)
    body = old.envelope(ses.bounce("jane@example.com", at=then), timestamp=then, version=version)
    message = parse_sns_message(body)
    assert message.signature_version == version
    checking(old).verify(message, now=message.timestamp + dt.timedelta(seconds=2))
    with pytest.raises(SnsSignatureError, match="older than"):
        checking(old).verify(message, now=NOW)
    with pytest.raises(SnsSignatureError, match="not valid at"):
        checking(old, max_age=None).verify(message, now=NOW)
    checking(old, max_age=None, check_validity=False).verify(message, now=NOW)  # the signature still holds


def test_parsed_fields_and_the_string_to_sign_of_a_notification(signer: SnsSigner) -> None:
    at = dt.datetime(2022, 4, 1, 21, 24, 50, 200000, tzinfo=dt.UTC)
    body = signer.envelope(
        ses.bounce("jane@example.com"), message_id="71a6b82e-0f1a-58db-b902-e2ef60f87541", timestamp=at
    )
    message = parse_sns_message(body)
    assert message.type == "Notification" and message.subject is None
    assert message.message_id == "71a6b82e-0f1a-58db-b902-e2ef60f87541"
    assert message.timestamp == at
    assert message.unsubscribe_url is not None and message.unsubscribe_url.startswith(
        "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="
    )
    assert json.loads(message.message)["notificationType"] == "Bounce"
    # the AWS guide: "Key\nValue\n" for Message, MessageId, Subject (if any), Timestamp, TopicArn, Type
    assert canonical_string(message) == (
        b"Message\n" + message.message.encode() + b"\nMessageId\n71a6b82e-0f1a-58db-b902-e2ef60f87541\n"
        b"Timestamp\n2022-04-01T21:24:50.200Z\nTopicArn\n" + TOPIC.encode() + b"\nType\nNotification\n"
    )
    with_subject = parse_sns_message(signer.envelope("Hi", subject="S\u00e9", message_id="m", timestamp=at))
    assert canonical_string(with_subject) == (
        b"Message\nHi\nMessageId\nm\nSubject\nS\xc3\xa9\nTimestamp\n2022-04-01T21:24:50.200Z\nTopicArn\n"
        + TOPIC.encode()
        + b"\nType\nNotification\n"
    )


def test_the_string_to_sign_of_a_confirmation(signer: SnsSigner) -> None:
    at = dt.datetime(2015, 8, 18, 17, 34, 14, 978000, tzinfo=dt.UTC)
    message = parse_sns_message(
        signer.envelope("confirm", kind=SUBSCRIPTION_CONFIRMATION, message_id="b5", timestamp=at)
    )
    assert message.token and message.subscribe_url and message.token in message.subscribe_url
    assert (
        canonical_string(message)
        == (
            f"Message\nconfirm\nMessageId\nb5\nSubscribeURL\n{message.subscribe_url}\nTimestamp\n"
            f"2015-08-18T17:34:14.978Z\nToken\n{message.token}\nTopicArn\n{TOPIC}\nType\n"
            "SubscriptionConfirmation\n"
        ).encode()
    )


SIGNED_FIELDS = [
    (NOTIFICATION, field) for field in ("Message", "MessageId", "Subject", "Timestamp", "TopicArn")
] + [
    (SUBSCRIPTION_CONFIRMATION, field)
    for field in ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn")
]


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize(("kind", "field"), SIGNED_FIELDS)
def test_one_changed_character_of_any_signed_field_fails(
    signer: SnsSigner, kind: str, field: str, version: str
) -> None:
    subject = EVENT_SUBJECT if kind == NOTIFICATION else None
    body = signer.envelope(
        ses.bounce("jane@example.com"), kind=kind, subject=subject, timestamp=SENT, version=version
    )
    changed = tampered(body, field)
    assert json.loads(changed)[field] != json.loads(body)[field]
    topics = {TOPIC, json.loads(changed)["TopicArn"]}  # a changed topic must fail on its signature too
    checking(signer, topic_arns=topics).verify(parse_sns_message(body), now=NOW)
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        checking(signer, topic_arns=topics).verify(parse_sns_message(changed), now=NOW)


def test_crlf_in_message_is_signed_as_sent(signer: SnsSigner) -> None:
    body = signed(signer, "notification-v2-crlf-message")
    assert parse_sns_message(body).message == "line one\r\nline two\r\n"
    checking(signer).verify(parse_sns_message(body), now=NOW)
    data = json.loads(body)
    data["Message"] = data["Message"].replace("\r\n", "\n")  # what a line-ending "fix" in transit does
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        checking(signer).verify(parse_sns_message(json.dumps(data)), now=NOW)


@pytest.mark.parametrize(("signed_as", "claimed"), [("1", "2"), ("2", "1")])
def test_a_signature_under_the_other_version_fails(signer: SnsSigner, signed_as: str, claimed: str) -> None:
    data = json.loads(signer.envelope("Hello world", timestamp=SENT, version=signed_as))
    data["SignatureVersion"] = claimed
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        checking(signer).verify(parse_sns_message(json.dumps(data)), now=NOW)


@pytest.mark.parametrize(
    ("version", "signature", "match"),
    [
        ("3", None, "SignatureVersion '3'"),
        ("", None, "missing SignatureVersion"),
        ("1", "not base64!", "not base64"),
        ("1", "QUJD", "signature does not match"),
    ],
)
def test_unsupported_version_or_garbled_signature_fails(
    signer: SnsSigner, version: str, signature: str | None, match: str
) -> None:
    data = json.loads(signed(signer, "notification-v2-text"))
    data["SignatureVersion"] = version
    data["Signature"] = signature or data["Signature"]
    with pytest.raises(SnsMessageError, match=match):
        checking(signer).verify(parse_sns_message(data), now=NOW)


def test_tampered_signature_bytes_fail(signer: SnsSigner) -> None:
    data = json.loads(signed(signer, "subscriptionconfirmation-v1"))
    sig = bytearray(base64.b64decode(data["Signature"]))
    sig[10] ^= 1
    data["Signature"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        checking(signer).verify(parse_sns_message(data), now=NOW)


def test_a_signature_by_another_key_fails(signer: SnsSigner) -> None:
    """Another certificate for SNS, valid, at the same URL: the signature is checked against its key."""
    other = new_signer(cert_name=signer.cert_name)
    with pytest.raises(SnsSignatureError, match="signature does not match"):
        checking(other).verify(parse_sns_message(signed(signer, "subscriptionconfirmation-v1")), now=NOW)


@pytest.mark.parametrize("short_signature", [False, True], ids=["placeholder", "cut-short"])
@pytest.mark.parametrize("kind", DOCUMENTED_KINDS)
def test_documentation_style_unsigned_examples_fail(
    signer: SnsSigner, kind: Kind, short_signature: bool
) -> None:
    """Current, from our topic, naming a certificate URL of SNS: only the signature is missing. Even a
    source that hands out a genuine certificate for any URL must not make them pass."""
    request = documentation_example(
        kind, topic_arn=TOPIC, signing_cert_url=signer.cert_url, at=SENT, short_signature=short_signature
    )
    headers, body = split_http_text(request)
    assert headers["x-amz-sns-message-type"] == kind and headers["content-length"] == str(len(body.encode()))
    message = parse_sns_message(body, message_type_header=headers["x-amz-sns-message-type"])
    with pytest.raises(SnsSignatureError, match="Signature is not base64|signature does not match"):
        checking(signer).verify(message, now=NOW)


CERT_URL_ATTACKS = [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-local.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-local.pem",
    "https://evil.example/sns.us-east-1.amazonaws.com/SimpleNotificationService-local.pem",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-local.pem",
    "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-local.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-local.pem.txt",
    "https://s3.amazonaws.com/SimpleNotificationService-local.pem",
    "https://SNS.US-EAST-1.AMAZONAWS.COM.evil/x.pem",
]


def recording(pem: bytes) -> tuple[CachedCertificates, list[str]]:
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return pem

    return CachedCertificates(fetch), fetched


@pytest.mark.parametrize("url", CERT_URL_ATTACKS)
def test_wrong_certificate_url_fails_before_any_fetch(signer: SnsSigner, url: str) -> None:
    certs, fetched = recording(signer.certificate_pem)
    message = parse_sns_message(signed(signer, "notification-v1-ses-bounce-no-subject", signing_cert_url=url))
    with pytest.raises(SnsSignatureError, match="SigningCertURL"):
        SnsVerifier(certs, topic_arns={TOPIC}).verify(message, now=NOW)
    assert fetched == []


def test_china_region_certificate_url_is_accepted() -> None:
    china = new_signer(region="cn-north-1", common_name="sns-cn-north-1.amazonaws.com.cn")
    assert china.cert_url == "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-local.pem"
    certs, fetched = recording(china.certificate_pem)
    message = parse_sns_message(china.envelope("x", timestamp=SENT))
    SnsVerifier(certs, topic_arns={TOPIC}).verify(message, now=NOW)  # passed the URL check, then fetched
    assert fetched == [china.cert_url]


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


def test_message_type_header_must_agree_with_the_body(signer: SnsSigner) -> None:
    body = signed(signer, "subscriptionconfirmation-v1")
    assert (
        parse_sns_message(body, message_type_header=SUBSCRIPTION_CONFIRMATION).type
        == SUBSCRIPTION_CONFIRMATION
    )
    with pytest.raises(SnsMessageError, match="x-amz-sns-message-type"):
        parse_sns_message(body, message_type_header="Notification")


def test_certificates_are_fetched_once_per_url() -> None:
    signers = [
        new_signer(cert_name="SimpleNotificationService-one.pem"),
        new_signer(cert_name="SimpleNotificationService-two.pem"),
        new_signer(
            region="us-east-2", cert_name="SimpleNotificationService-one.pem"
        ),  # same name, other host
    ]
    pems = {s.cert_url: s.certificate_pem for s in signers}
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return pems[url]

    verifier = SnsVerifier(CachedCertificates(fetch), topic_arns={TOPIC})
    for _ in range(3):
        for s in signers:
            for version in ("1", "2"):
                verifier.verify(parse_sns_message(s.envelope("x", version=version, timestamp=SENT)), now=NOW)
    assert sorted(calls) == sorted(pems)


# --- time, topic and certificate checks -----------------------------------------------------------------


def test_old_message_fails_the_age_check(signer: SnsSigner) -> None:
    message = parse_sns_message(signed(signer, "notification-v2-text", at=NOW - dt.timedelta(hours=2)))
    with pytest.raises(SnsSignatureError, match="older than"):
        checking(signer).verify(message, now=NOW)
    checking(signer, max_age=dt.timedelta(hours=3)).verify(message, now=NOW)


def test_message_from_the_future_fails(signer: SnsSigner) -> None:
    message = parse_sns_message(signed(signer, "notification-v2-text", at=NOW + dt.timedelta(hours=1)))
    with pytest.raises(SnsSignatureError, match="future"):
        checking(signer).verify(message, now=NOW)
    checking(signer).verify(
        parse_sns_message(signed(signer, "notification-v2-text", at=NOW + dt.timedelta(minutes=4))), now=NOW
    )  # within the clock skew


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (NOW - dt.timedelta(days=60), NOW - dt.timedelta(days=1)),
        (NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=9)),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_expired_and_not_yet_valid_certificates_fail(
    signer: SnsSigner, start: dt.datetime, end: dt.datetime
) -> None:
    """The signer's own key, certified for another period: the dates alone refuse it."""
    message = parse_sns_message(signed(signer, "notification-v1-ses-bounce-no-subject"))
    dated = SnsVerifier(serving(signer.certificate(not_before=start, not_after=end)), topic_arns={TOPIC})
    with pytest.raises(SnsSignatureError, match="not valid at"):
        dated.verify(message, now=NOW)
    SnsVerifier(dated.certificates, topic_arns={TOPIC}, check_validity=False).verify(message, now=NOW)


def test_topic_outside_the_allowed_list_fails(signer: SnsSigner) -> None:
    message = parse_sns_message(
        signed(signer, "notification-v2-text", topic_arn="arn:aws:sns:eu-west-1:666:someone-elses")
    )
    with pytest.raises(SnsSignatureError, match="topic .* is not one we subscribed to"):
        checking(signer).verify(message, now=NOW)


def test_with_the_allow_list_empty_a_genuine_signed_message_is_refused(signer: SnsSigner) -> None:
    message = parse_sns_message(signed(signer, "notification-v1-ses-bounce-no-subject"))
    checking(signer).verify(message, now=NOW)  # genuine: it verifies when its topic is listed
    with pytest.raises(SnsSignatureError, match="NEWSLETTER_SNS_TOPIC_ARNS lists no topic"):
        checking(signer, topic_arns=()).verify(message, now=NOW)


@pytest.mark.parametrize("cn", ["evil.example", "attacker.amazonaws.com", "sns.amazonaws.com.evil.example"])
def test_a_certificate_not_issued_to_the_sns_service_fails(signer: SnsSigner, cn: str) -> None:
    message = parse_sns_message(signed(signer, "notification-v1-ses-bounce-no-subject"))
    pem = signer.certificate(
        not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=1), common_name=cn
    )
    with pytest.raises(SnsSignatureError, match=f"issued to {re.escape(cn)}, not the SNS service"):
        SnsVerifier(serving(pem), topic_arns={TOPIC}).verify(message, now=NOW)


def test_the_subject_is_checked_not_the_issuer(signer: SnsSigner) -> None:
    """A CA that calls itself sns.amazonaws.com does not make the certificates it issues SNS's; a CA of
    another name issuing to sns.amazonaws.com does not spoil them."""
    message = parse_sns_message(signed(signer, "notification-v1-ses-bounce-no-subject"))
    lookalike = LocalCa("sns.amazonaws.com")
    pem = lookalike.issue(
        signer.key.public_key(),
        common_name="attacker.example",
        not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=1),
    )
    with pytest.raises(SnsSignatureError, match="issued to attacker.example, not the SNS service"):
        SnsVerifier(serving(pem), topic_arns={TOPIC}).verify(message, now=NOW)
    genuine = x509.load_pem_x509_certificate(signer.certificate_pem)
    assert genuine.issuer != genuine.subject  # as with AWS's: a CA issued it
    checking(signer).verify(message, now=NOW)


def test_the_ca_certificate_and_a_certificate_without_a_name_fail(signer: SnsSigner) -> None:
    message = parse_sns_message(signed(signer, "notification-v1-ses-bounce-no-subject"))
    with pytest.raises(SnsSignatureError, match="issued to Newsletter Test CA, not the SNS service"):
        SnsVerifier(serving(signer.ca.certificate_pem), topic_arns={TOPIC}).verify(message, now=NOW)
    nameless = signer.ca.issue(
        signer.key.public_key(),
        common_name=None,
        not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=1),
    )
    with pytest.raises(SnsSignatureError, match="issued to no common name"):
        SnsVerifier(serving(nameless), topic_arns={TOPIC}).verify(message, now=NOW)


def test_a_certificate_without_an_rsa_key_fails(signer: SnsSigner) -> None:
    message = parse_sns_message(signed(signer, "notification-v1-ses-bounce-no-subject"))
    pem = signer.ca.issue(
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        common_name="sns.amazonaws.com",
        not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=1),
    )
    with pytest.raises(SnsSignatureError, match="no RSA key"):
        SnsVerifier(serving(pem), topic_arns={TOPIC}).verify(message, now=NOW)


@pytest.mark.parametrize(
    ("region", "cn"),
    [
        ("eu-west-1", "sns.amazonaws.com"),
        ("eu-west-1", "sns-signing.eu-west-1.amazonaws.com"),
        ("ap-southeast-4", "sns-signing.ap-southeast-4.amazonaws.com"),
        ("us-gov-west-1", "sns-us-gov-west-1.amazonaws.com"),
    ],
)
def test_certificate_names_follow_the_partition_and_the_region(region: str, cn: str) -> None:
    regional = new_signer(region=region, common_name=cn)
    checking(regional).verify(parse_sns_message(regional.envelope("x", timestamp=SENT)), now=NOW)
    assert certificate_names("cn-north-1") == {"sns-cn-north-1.amazonaws.com.cn"}
    assert "sns.amazonaws.com" not in certificate_names("us-gov-west-1")


def test_a_certificate_for_another_regions_signing_name_fails() -> None:
    elsewhere = new_signer(region="eu-west-1", common_name="sns-signing.us-east-1.amazonaws.com")
    with pytest.raises(SnsSignatureError, match="not the SNS service"):
        checking(elsewhere).verify(parse_sns_message(elsewhere.envelope("x", timestamp=SENT)), now=NOW)


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
def test_certificate_hosts_that_are_not_sns_are_refused_before_any_connection(
    signer: SnsSigner, host: str
) -> None:
    url = f"https://{host}/SimpleNotificationService-x.pem"
    certs, fetched = recording(signer.certificate_pem)
    message = parse_sns_message(signed(signer, "notification-v1-ses-bounce-no-subject", signing_cert_url=url))
    with pytest.raises(SnsSignatureError, match="not https on an sns"):
        SnsVerifier(certs, topic_arns={TOPIC}).verify(message, now=NOW)
    with pytest.raises(SnsSignatureError, match="not https on an sns"):
        fetch_certificate_https(url)  # the real fetcher refuses before opening anything
    assert fetched == []


# --- MessageAttributes and the names AWS Lambda uses ---------------------------------------------------


def test_lambda_names_and_message_attributes_are_taken_and_verified(signer: SnsSigner) -> None:
    body = signed(signer, "notification-v2-lambda-names")
    data = json.loads(body)
    assert {"SigningCertUrl", "UnsubscribeUrl", "MessageAttributes"} <= set(data) and data["Subject"] is None
    assert "SigningCertURL" not in data and "UnsubscribeURL" not in data
    message = parse_sns_message(body)
    assert message.signing_cert_url == signer.cert_url and message.subject is None
    assert message.unsubscribe_url == data["UnsubscribeUrl"]
    checking(signer).verify(message, now=NOW)
    # MessageAttributes are outside the signature (the AWS guide signs none): changed, still verified
    data["MessageAttributes"]["campaign"]["Value"] = "13"
    checking(signer).verify(parse_sns_message(json.dumps(data)), now=NOW)


def test_lambda_names_are_checked_as_the_usual_ones(signer: SnsSigner) -> None:
    data = json.loads(signed(signer, "notification-v2-lambda-names"))
    data["SigningCertUrl"] = "https://evil.example/SimpleNotificationService-local.pem"
    certs, fetched = recording(signer.certificate_pem)
    with pytest.raises(SnsSignatureError, match="SigningCertURL"):
        SnsVerifier(certs, topic_arns={TOPIC}).verify(parse_sns_message(json.dumps(data)), now=NOW)
    assert fetched == []
    data = json.loads(signed(signer, "notification-v2-lambda-names"))
    data["UnsubscribeUrl"] = "https://evil.example/?Action=Unsubscribe"
    with pytest.raises(SnsSignatureError, match="UnsubscribeURL"):
        parse_sns_message(json.dumps(data))


@pytest.mark.parametrize(
    ("name", "added"),
    [
        ("notification-v1-message-attributes", "SigningCertUrl"),
        ("notification-v1-message-attributes", "UnsubscribeUrl"),
        ("notification-v2-lambda-names", "SigningCertURL"),
        ("notification-v2-lambda-names", "UnsubscribeURL"),
    ],
)
def test_a_key_under_both_names_is_refused(signer: SnsSigner, name: str, added: str) -> None:
    """Which of the two would count is not for the parser to guess, even when they agree."""
    body = signed(signer, name)
    present = next(key for key in json.loads(body) if key.lower() == added.lower())
    value = json.loads(body)[present]
    with pytest.raises(SnsMessageError, match="appears twice"):
        parse_sns_message(body[:-1] + f", {json.dumps(added)}: {json.dumps(value)}}}")


def test_a_whole_lambda_event_is_not_an_sns_message(signer: SnsSigner) -> None:
    record = json.loads(signed(signer, "notification-v2-lambda-names"))
    event = {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": record}]}
    with pytest.raises(SnsMessageError, match="Type None"):
        parse_sns_message(json.dumps(event))


def test_naive_now_is_a_programming_error(signer: SnsSigner) -> None:
    with pytest.raises(ValueError):
        checking(signer).verify(
            parse_sns_message(signed(signer, "notification-v2-text")), now=NOW.replace(tzinfo=None)
        )


SNS_KEYS = st.sampled_from(
    ["Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion", "Signature",
     "SigningCertURL", "Subject", "Token", "SubscribeURL", "UnsubscribeURL", "SigningCertUrl",
     "UnsubscribeUrl", "MessageAttributes"]
)  # fmt: skip
SNS_VALUES = st.none() | st.integers() | st.text(max_size=30) | st.sampled_from(
    ["Notification", "SubscriptionConfirmation", "1", "2", "2026-11-23T11:59:00.000Z", "QUJD",
     "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-local.pem", TOPIC]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(SNS_KEYS, SNS_VALUES, max_size=15) | st.binary(max_size=40))
def test_parsing_and_verifying_arbitrary_input_raises_only_sns_errors(
    body: dict[str, object] | bytes,
) -> None:
    verifier = SnsVerifier(_ARBITRARY_CERTS, max_age=None, check_validity=False, topic_arns={TOPIC})
    try:
        message = parse_sns_message(body if isinstance(body, bytes) else json.dumps(body))
        verifier.verify(message, now=NOW)
    except SnsMessageError as exc:
        assert "\n" not in str(exc)


_ARBITRARY_CERTS = serving(new_signer().certificate_pem)


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
    with pytest.raises(SnsSignatureError):
        certs.held(url)  # the failure is held: answered without trying again
    assert calls == [url]
    now[0] = 61.0
    assert certs.held(url) is None  # an expired failure is not held: it must be fetched again
    with pytest.raises(SnsSignatureError):
        certs(url)
    assert len(calls) == 2


def test_verifying_without_io_never_fetches_and_says_when_a_fetch_is_needed(signer: SnsSigner) -> None:
    """``verify_held`` (what an event loop may call) decides from the parsed message, fetches nothing,
    and tells a held certificate or a recent failure from a URL that needs a fetch: never seen, named
    under an escaped key beside a decoy, or failed longer ago than the retry interval."""
    calls: list[str] = []
    now = [0.0]

    def fetch(url: str) -> bytes:
        calls.append(url)
        if url != signer.cert_url:
            raise SnsSignatureError(f"cannot fetch {url}")
        return signer.certificate_pem

    verifier = SnsVerifier(CachedCertificates(fetch, clock=lambda: now[0]), topic_arns={TOPIC})
    genuine = parse_sns_message(signed(signer, "notification-v1-ses-bounce-no-subject"))
    assert verifier.verify_held(genuine, now=NOW) is False and calls == []
    verifier.verify(genuine, now=NOW)  # fetches (where the caller may wait)
    assert verifier.verify_held(genuine, now=NOW) is True and calls == [signer.cert_url]

    other = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-other.pem"
    decoyed = decoyed_certificate_url(
        signed(signer, "notification-v1-ses-bounce-no-subject"), other, decoy=signer.cert_url
    )
    message = parse_sns_message(decoyed)
    assert message.signing_cert_url == other
    assert verifier.verify_held(message, now=NOW) is False and calls == [signer.cert_url]
    with pytest.raises(SnsSignatureError, match="cannot fetch"):
        verifier.verify(message, now=NOW)
    assert calls == [signer.cert_url, other]
    with pytest.raises(SnsSignatureError, match="cannot fetch"):  # a recent failure: held, raised
        verifier.verify_held(message, now=NOW)
    now[0] = 61.0
    assert verifier.verify_held(message, now=NOW) is False  # expired: a fetch again, not on the loop
    assert calls == [signer.cert_url, other]
    unlisted = parse_sns_message(
        signed(signer, "notification-v1-ses-bounce-no-subject", topic_arn="arn:aws:sns:us-east-1:1:x")
    )
    with pytest.raises(SnsSignatureError, match="topic"):  # the checks that need no certificate run
        verifier.verify_held(unlisted, now=NOW)


def test_a_source_that_cannot_say_what_it_holds_is_left_to_verify(signer: SnsSigner) -> None:
    """A certificate source other than CachedCertificates might do I/O: verify_held never calls it."""
    calls: list[str] = []

    def source(url: str) -> x509.Certificate:
        calls.append(url)
        return x509.load_pem_x509_certificate(signer.certificate_pem)

    verifier = SnsVerifier(source, topic_arns={TOPIC})
    message = parse_sns_message(signed(signer, "notification-v2-text"))
    assert verifier.verify_held(message, now=NOW) is False and calls == []
    verifier.verify(message, now=NOW)
    assert calls == [signer.cert_url]
