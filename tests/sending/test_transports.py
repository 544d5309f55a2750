"""Transports against real servers: moto's SES (ThreadedMotoServer), aiosmtpd, and a folder."""

from __future__ import annotations

import email
import email.policy
import json

import botocore.awsrequest
import pytest

from mailer.errors import InputError
from mailer.sending.transports import (
    AccountPausedError,
    OutgoingMessage,
    RejectedError,
    TemporaryError,
    ThrottledError,
    available,
    create_transport,
)
from mailer.sending.transports.ses import SesTransport, classify
from mailer.sending.transports.smtp import classify_reply
from mailer.settings import Settings

KEY = "test-links-key"  # real transports refuse the default key

RAW = (
    b"From: =?utf-8?b?56S+5Yy6?= <news@example.org>\r\nTo: a@example.com\r\nSubject: hi\r\n"
    b"Message-ID: <1.2.x@example.org>\r\nX-Newsletter-Campaign: 1\r\n\r\nbody line\r\n.leading dot\r\n"
)


def _message(to: str = "a@example.com", raw: bytes = RAW) -> OutgoingMessage:
    return OutgoingMessage(
        sender="news@example.org", recipients=(to,), raw=raw, message_id="<1.2.x@example.org>", campaign_id=1
    )


def test_registry_names_and_unknown_transport(tmp_path):
    assert {"ses", "smtp", "file"} <= set(available())
    with pytest.raises(InputError, match="unknown transport 'pigeon'"):
        create_transport("pigeon", Settings(data_dir=tmp_path))


def test_file_transport_writes_one_eml_per_message_id(tmp_path):
    transport = create_transport("file", Settings(data_dir=tmp_path))
    result = transport.send(_message())
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert [f.stem for f in files] == [result.message_id] == ["1.2.x@example.org"]
    assert files[0].read_bytes() == RAW
    transport.send(_message())  # a resend of the same row replaces its file
    assert len(list((tmp_path / "outbox").iterdir())) == 1


def _ses_settings(moto_ses, tmp_path, **extra) -> Settings:
    return Settings(
        data_dir=tmp_path, transport="ses", ses_endpoint_url=moto_ses.endpoint_url, secret_key=KEY, **extra
    )


def test_ses_transport_sends_raw_through_moto(moto_ses, tmp_path):
    transport = create_transport("ses", _ses_settings(moto_ses, tmp_path))
    assert isinstance(transport, SesTransport)
    result = transport.send(_message())
    sent = moto_ses.sent_messages()
    assert [m.id for m in sent] == [result.message_id]
    parsed = email.message_from_string(sent[0].raw_data, policy=email.policy.default)
    assert parsed["X-Newsletter-Campaign"] == "1"
    assert "a@example.com" in sent[0].destinations
    transport.close()


def test_ses_unverified_sender_is_rejected(moto_ses, tmp_path):
    transport = create_transport("ses", _ses_settings(moto_ses, tmp_path))
    message = OutgoingMessage("x@unverified.test", ("a@example.com",), RAW, "<m@x>")
    with pytest.raises(RejectedError, match="MessageRejected"):
        transport.send(message)


def _answer(status: int, error_type: str, text: str):
    """A botocore before-send hook answering like SES would, without the request leaving."""

    class Raw:
        def stream(self, **_kw):
            yield json.dumps({"message": text}).encode()

    headers = {"x-amzn-ErrorType": error_type, "Content-Type": "application/json"}
    return botocore.awsrequest.AWSResponse("http://x", status, headers, Raw())


def test_ses_throttling_from_the_wire_is_a_throttled_error(moto_ses, tmp_path):
    transport = SesTransport(_ses_settings(moto_ses, tmp_path))
    calls = {"n": 0}

    def throttle_twice(request, **_kw):
        calls["n"] += 1
        if calls["n"] <= 2:
            return _answer(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
        return None

    transport.client.meta.events.register("before-send.sesv2.SendEmail", throttle_twice)
    for _ in range(2):
        with pytest.raises(ThrottledError, match="Maximum sending rate exceeded"):
            transport.send(_message())
    transport.send(_message())
    assert calls["n"] == 3  # botocore did not retry behind our back
    assert len(moto_ses.sent_messages()) == 1


@pytest.mark.parametrize(
    ("status", "error_type", "text", "expected"),
    [
        (400, "SendingPausedException", "Sending is paused for this account.", AccountPausedError),
        (400, "AccountSuspendedException", "The account is suspended.", AccountPausedError),
        (400, "LimitExceededException", "Daily message quota exceeded.", AccountPausedError),
        (400, "MessageRejected", "Email address is not verified.", RejectedError),
        (400, "BadRequestException", "Illegal address", RejectedError),
        (500, "InternalFailure", "oops", TemporaryError),
    ],
)
def test_ses_error_responses_map_to_transport_errors(moto_ses, tmp_path, status, error_type, text, expected):
    transport = SesTransport(_ses_settings(moto_ses, tmp_path))
    transport.client.meta.events.register(
        "before-send.sesv2.SendEmail", lambda request, **_kw: _answer(status, error_type, text)
    )
    with pytest.raises(expected):
        transport.send(_message())
    assert moto_ses.sent_messages() == []


def test_ses_unreachable_is_temporary(tmp_path):
    from support.services import free_port

    transport = create_transport(
        "ses", Settings(data_dir=tmp_path, ses_endpoint_url=f"http://127.0.0.1:{free_port()}", secret_key=KEY)
    )
    with pytest.raises(TemporaryError, match="SES unreachable"):
        transport.send(_message())


def test_classify_table():
    assert classify("Throttling", "Rate exceeded", 400) is ThrottledError
    assert classify("Throttling", "Daily message quota exceeded.", 400) is AccountPausedError
    assert classify("", "", 429) is ThrottledError
    assert classify("MailFromDomainNotVerifiedException", "", 400) is AccountPausedError
    assert classify_reply(421, "4.7.0 Too many messages, slow down") is ThrottledError
    assert classify_reply(451, "4.3.0 local error") is TemporaryError
    assert classify_reply(550, "5.1.1 no such user") is RejectedError


def test_smtp_transport_reuses_one_connection(smtp_sink, tmp_path):
    settings = Settings(data_dir=tmp_path, smtp_host=smtp_sink.host, smtp_port=smtp_sink.port, secret_key=KEY)
    transport = create_transport("smtp", settings)
    for n in range(3):
        transport.send(_message(to=f"r{n}@example.com"))
    transport.close()
    assert smtp_sink.connections == 1
    assert [rcpts for _, rcpts, _ in smtp_sink.received] == [[f"r{n}@example.com"] for n in range(3)]
    parsed = email.message_from_bytes(smtp_sink.received[0][2], policy=email.policy.default)
    assert parsed.get_content().replace("\r\n", "\n") == "body line\n.leading dot\n"  # dot-stuffing undone


def test_smtp_refused_recipient_fails_that_message_only(smtp_sink, tmp_path):
    smtp_sink.refuse["gone@example.com"] = (550, "5.1.1 mailbox unavailable")
    smtp_sink.refuse["busy@example.com"] = (451, "4.7.1 rate limited, slow down")
    transport = create_transport(
        "smtp", Settings(smtp_host=smtp_sink.host, smtp_port=smtp_sink.port, secret_key=KEY)
    )
    with pytest.raises(RejectedError, match="550"):
        transport.send(_message(to="gone@example.com"))
    with pytest.raises(ThrottledError):
        transport.send(_message(to="busy@example.com"))
    transport.send(_message(to="fine@example.com"))
    transport.close()
    assert [rcpts for _, rcpts, _ in smtp_sink.received] == [["fine@example.com"]]


def test_smtp_server_down_is_temporary(tmp_path):
    from support.services import free_port

    transport = create_transport(
        "smtp", Settings(smtp_host="127.0.0.1", smtp_port=free_port(), secret_key=KEY)
    )
    with pytest.raises(TemporaryError, match="unavailable"):
        transport.send(_message())


def test_real_transports_refuse_the_default_secret_key(tmp_path):
    from mailer.errors import ConfigurationError

    for name in ("ses", "smtp"):
        with pytest.raises(ConfigurationError, match="NEWSLETTER_SECRET_KEY is still the default"):
            create_transport(name, Settings(data_dir=tmp_path))
    assert create_transport("file", Settings(data_dir=tmp_path)).name == "file", "the embedded outbox may"
