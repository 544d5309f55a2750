"""File transport: one .eml per message in an outbox folder (the embedded default, and the tests' sink).

The file name comes from the Message-ID, which is stable for a ledger row, so a resend after a crash
overwrites its own file instead of adding a second one; each file is written to a temporary name and
renamed, so a reader never sees half a message.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from mailer.sending.transports.base import OutgoingMessage, TemporaryError, TransportResult, register
from mailer.settings import Settings

__all__ = ["FileTransport"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


@register("file")
class FileTransport:
    name = "file"

    def __init__(self, settings: Settings | None = None, *, outbox: Path | None = None) -> None:
        if outbox is None:
            if settings is None:
                raise ValueError("FileTransport needs settings or an outbox folder")
            outbox = settings.resolved_outbox_dir
        self.outbox = Path(outbox)
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.rate = settings.file_send_rate if settings is not None else None

    def path_for(self, message_id: str) -> Path:
        return self.outbox / (_UNSAFE.sub("_", message_id.strip("<>")) + ".eml")

    def send(self, message: OutgoingMessage) -> TransportResult:
        path = self.path_for(message.message_id)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_bytes(message.raw)
            os.replace(temporary, path)
        except OSError as exc:
            cause = errno.errorcode.get(exc.errno or 0, "error")
            raise TemporaryError(f"cannot write {path}: {exc.strerror or exc}", code=f"file-{cause}") from exc
        return TransportResult(message_id=path.stem)

    def max_rate(self) -> float | None:
        return self.rate

    def close(self) -> None:
        pass
