"""A small SES-compatible HTTP sink: answers sesv2 SendEmail (and GetAccount) like SES, counts and records.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length) on asyncio to take thousands of requests a
second on one core, so it measures the sender rather than itself. Each accepted message is recorded as
(recipient, Message-ID header, campaign header); duplicates (same Message-ID twice) are counted.
``--throttle-first N`` answers the first N SendEmail calls with 429 TooManyRequestsException
("Maximum sending rate exceeded."), as SES does when sending too fast.

    python -m mailer.testing.ses_sink --port 8025 [--throttle-first 50] [--max-send-rate 14]
        [--record out.tsv]

GET /_sink/stats returns {"calls", "accepted", "throttled", "unique", "duplicates"}; POST /_sink/reset
clears it. Tests run it in a thread (``SesSink.start_in_thread``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_LENGTH_RE = re.compile(rb"(?im)^content-length:\s*(\d+)")
_HEADER_RE = {
    "message_id": re.compile(rb"(?im)^Message-ID:\s*(\S+)"),
    "campaign": re.compile(rb"(?im)^X-Newsletter-Campaign:\s*(\S+)"),
}
_DATA_RE = re.compile(rb'"Data"\s*:\s*"')
_TO_RE = re.compile(rb'"ToAddresses"\s*:\s*\[\s*"([^"]*)"')


def _fields(body: bytes) -> tuple[bytes, list[str]]:
    """Raw data (base64) and recipients of a SendEmail body. The raw message is most of a 70 KB body, so
    it is sliced out instead of parsing the JSON (which would cost the sink more than the sender)."""
    match = _DATA_RE.search(body)
    if match is None:
        request = json.loads(body)
        data = request["Content"]["Raw"]["Data"].encode()
        recipients = request.get("Destination", {}).get("ToAddresses") or [""]
        return data, recipients
    end = body.index(b'"', match.end())
    to = _TO_RE.search(body)
    return body[match.end() : end], [to.group(1).decode() if to else ""]


_THROTTLE_BODY = json.dumps({"message": "Maximum sending rate exceeded."}).encode()


@dataclass
class Record:
    recipient: str
    message_id: str
    campaign: str
    ses_id: str


@dataclass
class SesSink:
    throttle_first: int = 0
    max_send_rate: float = 1000.0
    keep_raw: bool = False  # keep decoded raw messages (tests); the benchmark keeps only headers
    # (n, error type, message): after n accepted messages answer every SendEmail with that error, with
    # HTTP status fail_status (400: a rejection or a pause; 5xx: an outage)
    fail_after: tuple[int, str, str] | None = None
    fail_status: int = 400
    calls: int = 0
    throttled: int = 0
    records: list[Record] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, throttle_first: int = 0) -> None:
        with self.lock:
            self.throttle_first, self.calls, self.throttled = throttle_first, 0, 0
            self.records.clear()
            self.raw.clear()
            self.seen.clear()

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "calls": self.calls,
                "accepted": len(self.records),
                "throttled": self.throttled,
                "unique": len(self.seen),
                "duplicates": sum(n - 1 for n in self.seen.values()),
            }

    def handle(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if method == b"POST" and path.startswith(b"/v2/email/outbound-emails"):
            return self._send_email(body)
        if method == b"GET" and path.startswith(b"/v2/email/account"):
            quota = {
                "Max24HourSend": 1e9,
                "MaxSendRate": self.max_send_rate,
                "SentLast24Hours": len(self.records),
            }
            return 200, json.dumps({"SendQuota": quota, "SendingEnabled": True}).encode(), {}
        if path.startswith(b"/_sink/stats"):
            return 200, json.dumps(self.stats()).encode(), {}
        if method == b"POST" and path.startswith(b"/_sink/reset"):
            self.reset(int(json.loads(body or b"{}").get("throttle_first", 0)))
            return 200, b"{}", {}
        return 404, json.dumps({"message": f"not found: {path.decode()}"}).encode(), {}

    def _send_email(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        with self.lock:
            self.calls += 1
            if self.calls <= self.throttle_first:
                self.throttled += 1
                return 429, _THROTTLE_BODY, {"x-amzn-ErrorType": "TooManyRequestsException"}
            if self.fail_after is not None and len(self.records) >= self.fail_after[0]:
                _, error_type, text = self.fail_after
                body = json.dumps({"message": text}).encode()
                return self.fail_status, body, {"x-amzn-ErrorType": error_type}
        try:
            data, recipients = _fields(body)
            head = base64.b64decode(data[:5460]) if not self.keep_raw else b""  # the headers are enough
            raw = base64.b64decode(data) if self.keep_raw else head
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            error = {"x-amzn-ErrorType": "BadRequestException"}
            return 400, json.dumps({"message": f"BadRequestException: {exc}"}).encode(), error
        headers = raw.split(b"\r\n\r\n", 1)[0]
        found = {}
        for name, pattern in _HEADER_RE.items():
            match = pattern.search(headers)
            found[name] = match.group(1).decode() if match else ""
        ses_id = uuid.uuid4().hex
        with self.lock:
            self.records.append(Record(recipients[0], found["message_id"], found["campaign"], ses_id))
            self.seen[found["message_id"] or ses_id] += 1
            if self.keep_raw:
                self.raw.append(raw)
        return 200, json.dumps({"MessageId": ses_id}).encode(), {}

    # --- the HTTP side ----------------------------------------------------------------------------
    async def serve(self, host: str, port: int, ready: threading.Event | None = None) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Http(self), host, port, backlog=256)
        self._server, self._loop = server, loop
        if ready is not None:
            ready.set()
        async with server:
            await server.serve_forever()

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> SinkThread:
        ready = threading.Event()
        handle = SinkThread(self, host, port, ready)
        handle.thread.start()
        ready.wait(10)
        return handle


class SinkThread:
    def __init__(self, sink: SesSink, host: str, port: int, ready: threading.Event) -> None:
        if port == 0:
            import socket

            with socket.socket() as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
        self.sink, self.host, self.port = sink, host, port
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run(ready)), daemon=True)

    async def _run(self, ready: threading.Event) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.sink.serve(self.host, self.port, ready)

    def stop(self) -> None:
        loop = getattr(self.sink, "_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(self.sink._server.close)
        self.thread.join(5)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


class _Http(asyncio.Protocol):
    def __init__(self, sink: SesSink) -> None:
        self.sink = sink
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            match = _LENGTH_RE.search(head)
            length = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            method, path, _ = (head.split(b"\r\n", 1)[0].split(b" ") + [b"", b""])[:3]
            status, payload, headers = self.sink.handle(method, path, body)
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            self.transport.write(  # type: ignore[attr-defined]
                (
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                    f"x-amzn-RequestId: {uuid.uuid4()}\r\n{extra}Content-Length: {len(payload)}\r\n\r\n"
                ).encode()
                + payload
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--throttle-first", type=int, default=0)
    parser.add_argument("--max-send-rate", type=float, default=1000.0)
    parser.add_argument("--record", type=Path, help="write recipient, Message-ID, campaign per line at exit")
    args = parser.parse_args()
    sink = SesSink(throttle_first=args.throttle_first, max_send_rate=args.max_send_rate)
    try:
        asyncio.run(sink.serve(args.host, args.port))
    except KeyboardInterrupt:
        pass
    finally:
        if args.record:
            with args.record.open("w") as out:
                for record in sink.records:
                    out.write(f"{record.recipient}\t{record.message_id}\t{record.campaign}\n")


if __name__ == "__main__":
    main()
