"""SNS HTTP requests as the AWS documentation shows them, and changed copies of signed messages.

``documentation_example`` writes a request the way the SNS developer guide's HTTP examples are written
(headers, then a JSON body whose signature is a placeholder): the project's own stand-in for those
examples, which ``tests/real_world`` replays when ../shared/fixtures holds them. ``split_http`` reads
either back into headers and body.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Literal

from mailer.feedback.sns import NOTIFICATION, SUBSCRIPTION_CONFIRMATION

Kind = Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
DOCUMENTED_KINDS: tuple[Kind, ...] = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")

# a placeholder cut short, as in the guide ("EXAMPLE..."), and one of a real signature's length
_SHORT_PLACEHOLDER = "EXAMPLEsignature..."
_FULL_PLACEHOLDER = base64.b64encode(b"EXAMPLE signature placeholder".ljust(256, b".")).decode()


def split_http(path: Path) -> tuple[dict[str, str], str]:
    """An HTTP request as written in a file: its headers (lower-case names) and its body."""
    return split_http_text(path.read_text())


def split_http_text(text: str) -> tuple[dict[str, str], str]:
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    headers = {}
    for line in head.splitlines()[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body


def documentation_example(
    kind: Kind, *, topic_arn: str, signing_cert_url: str, at: dt.datetime, short_signature: bool = False
) -> str:
    """An HTTP POST of SNS carrying a message of ``kind`` with a placeholder signature, in the layout of
    the guide's examples (``" : "`` separators, a two-space indent, its headers). Everything but the
    signature is as a verifier wants it (topic, certificate URL, time), so the signature alone refuses it.
    """
    message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}|{at.isoformat()}"))
    token = uuid.uuid5(uuid.NAMESPACE_OID, message_id).hex * 2
    region = topic_arn.split(":")[3]
    subscription = f"{topic_arn}:{uuid.uuid5(uuid.NAMESPACE_DNS, topic_arn)}"
    body: dict[str, str] = {"Type": kind, "MessageId": message_id}
    if kind == NOTIFICATION:
        body |= {"TopicArn": topic_arn, "Subject": "My First Message", "Message": "Hello world!"}
    else:
        text = (
            f"You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the subscription, visit the "
            "SubscribeURL included in this message."
            if kind == SUBSCRIPTION_CONFIRMATION
            else f"You have chosen to deactivate subscription {subscription}.\nTo cancel this operation and "
            "restore the subscription, visit the SubscribeURL included in this message."
        )
        body |= {
            "Token": token,
            "TopicArn": topic_arn,
            "Message": text,
            "SubscribeURL": f"https://sns.{region}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic_arn}"
            f"&Token={token}",
        }
    body |= {
        "Timestamp": at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "SignatureVersion": "1",
        "Signature": _SHORT_PLACEHOLDER if short_signature else _FULL_PLACEHOLDER,
        "SigningCertURL": signing_cert_url,
    }
    if kind == NOTIFICATION:
        body["UnsubscribeURL"] = (
            f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={subscription}"
        )
    text = json.dumps(body, indent=2, separators=(",", " : "))
    headers = [
        "POST / HTTP/1.1",
        f"x-amz-sns-message-type: {kind}",
        f"x-amz-sns-message-id: {message_id}",
        f"x-amz-sns-topic-arn: {topic_arn}",
        *([f"x-amz-sns-subscription-arn: {subscription}"] if kind != SUBSCRIPTION_CONFIRMATION else []),
        f"Content-Length: {len(text.encode())}",
        "Content-Type: text/plain; charset=UTF-8",
        "Host: myhost.example.com",
        "Connection: Keep-Alive",
        "User-Agent: Amazon Simple Notification Service Agent",
    ]
    return "\r\n".join(headers) + "\r\n\r\n" + text


def tampered(body: str, field: str) -> str:
    """``body`` (a JSON SNS message) with one character of ``field`` changed: its last digit moved on by
    one, or (no digit) its last letter's case swapped. The result is as well-formed as the original."""
    data = json.loads(body)
    value: str = data[field]
    digits = [i for i, ch in enumerate(value) if ch.isascii() and ch.isdigit()]
    if digits:
        i = digits[-1]
        changed = str((int(value[i]) + 1) % 10)
    else:
        i = max(i for i, ch in enumerate(value) if ch.isascii() and ch.isalpha())
        changed = value[i].swapcase()
    data[field] = value[:i] + changed + value[i + 1 :]
    return json.dumps(data, ensure_ascii=False)


def decoyed_certificate_url(body: str, url: str, *, decoy: str) -> str:
    """``body`` (a JSON SNS message) naming the certificate ``url`` under its key written with a JSON
    escape (``"Signing\\u0043ertURL"``: the same key to a JSON parser), while a plain ``"SigningCertURL"``
    inside MessageAttributes, which no signature covers, names ``decoy``: a look at the raw text that
    finds one certificate URL finds the decoy."""
    data = json.loads(body)
    data.pop("SigningCertURL", None)
    data["MessageAttributes"] = {"SigningCertURL": decoy}
    data["SigningCertURL"] = url
    text = json.dumps(data, ensure_ascii=False)
    written = text.rsplit('"SigningCertURL"', 1)
    return '"Signing\\u0043ertURL"'.join(written)
