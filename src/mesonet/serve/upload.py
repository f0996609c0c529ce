"""Receive one multipart upload by streaming it to a temporary file, counting bytes.

FastAPI's ``UploadFile`` spools the whole body before the handler runs, so it can neither
stop a 5 GB upload at the limit nor choose where the bytes land. This parser reads the
request stream chunk by chunk, writes the file part straight to a temporary file in a
folder we own, and gives up (removing the file) as soon as the limit is passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

FILE_FIELD = "file"
MAX_FIELDS = 16
"""Form parts accepted besides the file (options are a handful of short values); parts are
counted, not names, so a field repeated 300,000 times stops at the 17th."""
MAX_FIELD_BYTES = 1024
"""Longest value accepted for a text form field."""
MULTIPART_OVERHEAD = 64 * 1024
"""Allowance for boundaries, part headers and text fields when checking Content-Length."""
MAX_BOUNDARY = 256
"""Longest multipart boundary accepted (RFC 2046 allows 70; python-multipart's own limit)."""
READ_IDLE_S = 30.0
"""Default: an upload that sends nothing for this long is dropped (408)."""
READ_TOTAL_S = 600.0
"""Default: an upload still arriving after this long is dropped (408)."""
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


class UploadError(Exception):
    """An upload refused with an HTTP status and a one-line message for the user."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass
class Upload:
    """A received upload: where its bytes are, the name the client gave and the form fields."""

    path: Path
    filename: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)


def display_name(raw: str) -> str:
    """The client's file name without any folder part (both / and \\), at most 200 characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:200] or "upload"


def limit_text(max_bytes: int) -> str:
    """'200 MB', '1.5 MB', '10 KB' or '512 bytes' for messages."""
    if max_bytes >= 1024 * 1024:
        return f"{max_bytes / (1024 * 1024):.3g} MB"
    if max_bytes >= 1024:
        return f"{max_bytes / 1024:.3g} KB"
    return f"{max_bytes} bytes"


class _Receiver:
    """python-multipart callbacks that route the file part to disk and collect text fields."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.path: Path | None = None
        self.filename = ""
        self.size = 0
        self.parts = 0
        self.finished = False
        self._file = None
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._name = ""
        self._is_file = False
        self._text = bytearray()

    # ------------------------------------------------------------------ callbacks

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_FIELDS + 1:
            raise UploadError(422, f"too many form parts (at most {MAX_FIELDS} fields and a file)")
        self._headers = {}
        self._name = ""
        self._is_file = False
        self._text = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise UploadError(400, "malformed form: a part has no field name")
        self._name = options[b"name"].decode("utf-8", "replace")
        if b"filename" not in options:
            return
        if self._name != FILE_FIELD:
            raise UploadError(422, f"unexpected file field {self._name!r}: send it as 'file'")
        if self.path is not None:
            raise UploadError(422, "send one file per request")
        self._is_file = True
        self.filename = display_name(options[b"filename"].decode("utf-8", "replace"))
        suffix = Path(self.filename).suffix
        fd, name = tempfile.mkstemp(
            prefix="upload-",
            suffix=suffix.lower() if _SAFE_SUFFIX.match(suffix) else "",
            dir=self.directory,
        )
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._is_file:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise UploadError(422, f"form field {self._name!r} is too long")
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise UploadError(
                413, f"file too large: the limit is {limit_text(self.max_bytes)} per upload"
            )
        self._file.write(data[start:end])

    def on_part_end(self) -> None:
        if self._is_file:
            self._file.close()
        else:
            self.fields[self._name] = self._text.decode("utf-8", "replace")

    def on_end(self) -> None:
        self.finished = True

    # ------------------------------------------------------------------ helpers

    def callbacks(self) -> dict:
        names = (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
            "on_end",
        )
        return {name: getattr(self, name) for name in names}

    def discard(self) -> None:
        """Close and remove the temporary file, if one was started."""
        if self._file is not None:
            self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def receive_upload(
    request: Request,
    directory: Path,
    max_bytes: int,
    *,
    idle_s: float = READ_IDLE_S,
    total_s: float = READ_TOTAL_S,
) -> Upload:
    """Stream the request's multipart body: the ``file`` part to disk, other parts as text.

    Raises :class:`UploadError` (413 past ``max_bytes``, 415 when the body is not
    multipart, 400/422 for malformed forms, 408 when the client sends nothing for
    ``idle_s`` seconds or is still sending after ``total_s``) and lets ``ClientDisconnect``
    through; in every failure the temporary file is already removed.
    """
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(415, "send the file as multipart/form-data in the field 'file'")
    if len(params[b"boundary"]) > MAX_BOUNDARY:
        raise UploadError(400, f"malformed multipart body (boundary over {MAX_BOUNDARY} bytes)")
    length = request.headers.get("content-length", "")
    most = max_bytes + MULTIPART_OVERHEAD
    if length.isdigit() and int(length) > most:
        raise UploadError(413, f"file too large: the limit is {limit_text(max_bytes)} per upload")
    receiver = _Receiver(directory, max_bytes)
    try:
        parser = MultipartParser(params[b"boundary"], receiver.callbacks())
        received = 0
        async with contextlib.aclosing(_timed(request.stream(), idle_s, total_s)) as chunks:
            async for chunk in chunks:
                received += len(chunk)
                if received > most:  # whatever its parts, a body this long is no upload of ours
                    raise UploadError(
                        413, f"file too large: the limit is {limit_text(max_bytes)} per upload"
                    )
                if chunk:
                    parser.write(chunk)
        parser.finalize()
        if not receiver.finished:
            raise UploadError(400, "the upload ended early (incomplete multipart body)")
        if receiver.path is None:
            raise UploadError(422, "no file uploaded: send it in the multipart field 'file'")
    except MultipartParseError as exc:
        receiver.discard()
        raise UploadError(400, f"malformed multipart body ({exc})") from None
    except BaseException:  # ClientDisconnect, UploadError, cancellation: never leave a file
        receiver.discard()
        raise
    return Upload(receiver.path, receiver.filename, receiver.size, receiver.fields)


async def _timed(
    chunks: AsyncIterator[bytes], idle_s: float, total_s: float
) -> AsyncIterator[bytes]:
    """``chunks``, raising a 408 :class:`UploadError` when the next one takes longer than
    ``idle_s`` or the whole stream longer than ``total_s`` (a stalled client holds a
    connection, a descriptor and a temporary file for as long as it is waited for)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_s
    iterator = aiter(chunks)
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UploadError(408, f"upload took longer than {total_s:g} s: send it faster")
            wait = min(idle_s, remaining)
            try:
                async with asyncio.timeout(wait):
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if wait < idle_s:
                    raise UploadError(
                        408, f"upload took longer than {total_s:g} s: send it faster"
                    ) from None
                raise UploadError(
                    408, f"upload stalled: nothing received for {idle_s:g} s"
                ) from None
            yield chunk
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
