"""The videoloader error tree.

Every error names the (redacted) URL it concerns, what was got, what was
expected and, where there is one, what to do. Errors subclass the built-in
exception a caller would naturally catch, so ``except ValueError`` still works
for a broken container and ``except FileNotFoundError`` for a 404::

    VideoLoaderError(Exception)
    ├── SourceError(OSError)                    the bytes could not be had
    │   ├── SourceNotFoundError(FileNotFoundError)    404 / no such file
    │   ├── SourceAccessError(PermissionError)        401 / 403
    │   │   └── OriginRefusedError                    a server's origin policy refuses the URL
    │   ├── RangeRequestError                         server ignored or broke Range
    │   ├── SourceChangedError                        ETag/Last-Modified/size changed
    │   ├── SourceUnreachableError(ConnectionError)   DNS, refused connection, TLS: not retried
    │   └── TransferError(TimeoutError)               retries exhausted, timeouts
    ├── ContainerError(ValueError)               the bytes are not a usable video
    │   ├── NotAVideoError                            not a container we know (e.g. HTML),
    │   │                                             a still image, or no frame to decode
    │   ├── TrackNotFoundError                        the asked track is missing or not video
    │   ├── MP4ParseError                             broken box structure
    │   │   └── TruncatedFileError                    a box or sample runs past EOF
    │   ├── MatroskaParseError                        broken EBML/Matroska elements
    │   └── UnsupportedFormatError(NotImplementedError)  valid, but not handled here
    ├── DecodeError(RuntimeError)                the decoder failed
    │   └── CorruptVideoError                         a packet could not be decoded
    ├── BackendUnavailableError(RuntimeError)    a decoder backend cannot run here
    ├── MissingDependencyError(ImportError)      an optional dependency is not installed
    ├── ManifestError(ValueError)                a source list or manifest row is malformed
    ├── SamplingError(ValueError)                a sampler cannot choose frames from a video
    ├── SampleError(RuntimeError)                a dataset item failed with an error of no re-raisable type
    └── WeightsUnavailableError(RuntimeError)    pretrained weights could not be loaded

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
    "ManifestError",
    "MatroskaParseError",
    "MissingDependencyError",
    "NotAVideoError",
    "OriginRefusedError",
    "RangeRequestError",
    "SampleError",
    "SamplingError",
    "SourceAccessError",
    "SourceChangedError",
    "SourceError",
    "SourceNotFoundError",
    "SourceUnreachableError",
    "TrackNotFoundError",
    "TransferError",
    "TruncatedFileError",
    "UnsupportedFormatError",
    "VideoLoaderError",
    "WeightsUnavailableError",
]


class VideoLoaderError(Exception):
    """Base of every error videoloader raises on purpose."""


class SourceError(VideoLoaderError, OSError):
    """The bytes of a source could not be read as asked."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """The source does not exist (HTTP 404, missing file or object)."""


class SourceAccessError(SourceError, PermissionError):
    """The source exists but we may not read it (HTTP 401/403)."""


class OriginRefusedError(SourceAccessError):
    """A perfect-reads server or proxy refuses to fetch the URL: its host is not
    allowed, or it resolves (also after a redirect) to a private, loopback,
    link-local or cloud-metadata address."""


class RangeRequestError(SourceError):
    """The server did not honour a Range request (200 with the whole body,
    a short or long body, 416), so the bytes cannot be trusted."""


class SourceChangedError(SourceError):
    """The object changed (ETag, Last-Modified or size) since it was opened;
    reading on would mix bytes of two versions."""


class SourceUnreachableError(SourceError, ConnectionError):
    """The host cannot be reached at all: its name does not resolve, it refuses
    the connection, or its TLS certificate fails verification. Retrying would
    not help, so it is raised at once (at most one retry) and says what failed."""


class TransferError(SourceError, TimeoutError):
    """Transient faults (resets, timeouts, 5xx, 429) outlasted the retries."""


class ContainerError(VideoLoaderError, ValueError):
    """The bytes were read but are not a usable video container."""


class NotAVideoError(ContainerError):
    """The source is not a container videoloader or FFmpeg recognises."""


class TrackNotFoundError(ContainerError):
    """The track asked for does not exist in the file, or is not a video track."""


class MP4ParseError(ContainerError):
    """The ISO-BMFF box structure is broken."""


class TruncatedFileError(MP4ParseError):
    """A box, table or sample points past the end of the file."""


class MatroskaParseError(ContainerError):
    """The EBML/Matroska element structure is broken (bad sizes, elements out
    of place, blocks past the end of the file)."""


class UnsupportedFormatError(ContainerError, NotImplementedError):
    """Valid input that the index path does not handle (the reader falls back)."""


class DecodeError(VideoLoaderError, RuntimeError):
    """The decoder failed."""


class CorruptVideoError(DecodeError):
    """A packet could not be decoded into the frame asked for."""


class BackendUnavailableError(VideoLoaderError, RuntimeError):
    """A decoder backend cannot run on this machine; the message says why."""


class ManifestError(VideoLoaderError, ValueError):
    """A source list or manifest file is malformed (no ``url``, bad window, bad row)."""


class SamplingError(VideoLoaderError, ValueError):
    """A sampler cannot choose frames from a video: its window holds no frame,
    or too few for the clip with ``policy="error"``."""


class SampleError(VideoLoaderError, RuntimeError):
    """A dataset item failed with an exception that cannot be re-raised as its
    own type; the message names the item and the URL, ``__cause__`` is the original."""


class WeightsUnavailableError(VideoLoaderError, RuntimeError):
    """Pretrained weights could not be loaded (no network, missing file); the message says how to proceed."""


class MissingDependencyError(VideoLoaderError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
