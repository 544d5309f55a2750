"""The AWS documentation's HTTP examples of SNS messages (../shared/fixtures/sns/http-examples-unsigned)."""

from __future__ import annotations

from pathlib import Path


def split_http(path: Path) -> tuple[dict[str, str], str]:
    """An HTTP request as written in a file: its headers (lower-case names) and its body."""
    head, _, body = path.read_text().replace("\r\n", "\n").partition("\n\n")
    headers = {}
    for line in head.splitlines()[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body
