"""The perfect-reads server: our index as a service for any decoder.

``make_app()`` returns an aiohttp Application (``videoloader serve`` runs it):

* ``GET /v1/clip.mp4?url=URL&t=SECONDS[&t=...]`` or ``&i=INDEX[&i=...]``: a
  small self-contained MP4 holding only the samples that decode those frames
  exactly; a sequential decode (``ffmpeg -i``) outputs only those frames, at
  their source timestamps (``X-Videoloader-Frames`` lists the
  requested frames' pts in seconds, ``X-Videoloader-Upstream-Bytes`` what was
  read from the origin);
* ``GET /v1/index?url=URL``: a JSON summary of the video;
* errors as JSON: 400 bad request, 403 refused origin, 413 too large,
  422 not a video / unsupported, 502 origin failing.

Origins on private, loopback, link-local or metadata addresses are refused
unless ``allow_private`` (checked on the resolved address of every
connection, redirects included). See docs/perfect_reads.md.
"""

from __future__ import annotations

from ._app import ServeSettings, make_app
from ._guard import OriginPolicy
from ._log import RedactedAccessLogger

__all__ = ["OriginPolicy", "RedactedAccessLogger", "ServeSettings", "make_app"]
