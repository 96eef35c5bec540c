"""The videoloader error tree.

Every error names the (redacted) URL it concerns, what was got, what was
expected and, where there is one, what to do. Errors subclass the built-in
exception a caller would naturally catch, so ``except ValueError`` still works
for a broken container and ``except FileNotFoundError`` for a 404::

    VideoLoaderError(Exception)
    ├── SourceError(OSError)                    the bytes could not be had
    │   ├── SourceNotFoundError(FileNotFoundError)    404 / no such file
    │   ├── SourceAccessError(PermissionError)        401 / 403
    │   ├── RangeRequestError                         server ignored or broke Range
    │   ├── SourceChangedError                        ETag/Last-Modified/size changed
    │   └── TransferError(TimeoutError)               retries exhausted, timeouts
    ├── ContainerError(ValueError)               the bytes are not a usable video
    │   ├── NotAVideoError                            not a container we know (e.g. HTML)
    │   ├── MP4ParseError                             broken box structure
    │   │   └── TruncatedFileError                    a box or sample runs past EOF
    │   └── UnsupportedFormatError(NotImplementedError)  valid, but not handled here
    ├── DecodeError(RuntimeError)                the decoder failed
    │   └── CorruptVideoError                         a packet could not be decoded
    └── BackendUnavailableError(RuntimeError)    a decoder backend cannot run here

``MP4ParseError`` means "broken", ``TruncatedFileError`` "need bytes that do
not exist", ``UnsupportedFormatError`` "fine, but not ours": the reader falls
back to PyAV demuxing only on the last one.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "ContainerError",
    "CorruptVideoError",
    "DecodeError",
    "MP4ParseError",
    "NotAVideoError",
    "RangeRequestError",
    "SourceAccessError",
    "SourceChangedError",
    "SourceError",
    "SourceNotFoundError",
    "TransferError",
    "TruncatedFileError",
    "UnsupportedFormatError",
    "VideoLoaderError",
]


class VideoLoaderError(Exception):
    """Base of every error videoloader raises on purpose."""


class SourceError(VideoLoaderError, OSError):
    """The bytes of a source could not be read as asked."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """The source does not exist (HTTP 404, missing file or object)."""


class SourceAccessError(SourceError, PermissionError):
    """The source exists but we may not read it (HTTP 401/403)."""


class RangeRequestError(SourceError):
    """The server did not honour a Range request (200 with the whole body,
    a short or long body, 416), so the bytes cannot be trusted."""


class SourceChangedError(SourceError):
    """The object changed (ETag, Last-Modified or size) since it was opened;
    reading on would mix bytes of two versions."""


class TransferError(SourceError, TimeoutError):
    """Transient faults (resets, timeouts, 5xx, 429) outlasted the retries."""


class ContainerError(VideoLoaderError, ValueError):
    """The bytes were read but are not a usable video container."""


class NotAVideoError(ContainerError):
    """The source is not a container videoloader or FFmpeg recognises."""


class MP4ParseError(ContainerError):
    """The ISO-BMFF box structure is broken."""


class TruncatedFileError(MP4ParseError):
    """A box, table or sample points past the end of the file."""


class UnsupportedFormatError(ContainerError, NotImplementedError):
    """Valid input that the index path does not handle (the reader falls back)."""


class DecodeError(VideoLoaderError, RuntimeError):
    """The decoder failed."""


class CorruptVideoError(DecodeError):
    """A packet could not be decoded into the frame asked for."""


class BackendUnavailableError(VideoLoaderError, RuntimeError):
    """A decoder backend cannot run on this machine; the message says why."""
