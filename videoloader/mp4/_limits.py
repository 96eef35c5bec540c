"""Caps that keep the index's memory bounded by the bytes actually received.

A box can claim anything: a count of 2^32 entries, a size of 2 GiB, a time
of 2^64 ticks. Nothing here is allocated or converted on a claim alone:

* a table of N entries needs the box bytes for N entries (``FieldReader.check_table``);
* samples with no per-sample table entry (a constant ``stsz`` size, a ``trun``
  with no per-sample fields) are "unbacked": only ``MAX_UNBACKED_SAMPLES`` of
  them per track (about 25 MB of arrays), since no received byte vouches
  for their count;
* a track holds at most ``MAX_SAMPLES`` samples (about 77 hours at 60 fps);
* index boxes read on their own (nested ``sidx``, ``moof``, ``mfra``) have
  byte caps well above any real file's;
* the fragment walk's resynchronising lanes (``_resync``) are capped in
  number, in window size and in scanned bytes, so a scan holds at most
  ``MAX_RESYNC_LANES x MAX_RESYNC_WINDOW_BYTES`` at once;
* times and timescales are checked against int64 before numpy sees them.
"""

from __future__ import annotations

from .._errors import MP4ParseError

__all__ = [
    "MAX_EDITS",
    "MAX_EDIT_SAMPLES_FACTOR",
    "MAX_FRAGMENT_BOX_BYTES",
    "MAX_INDEX_BYTES",
    "MAX_RESYNC_LANES",
    "MAX_RESYNC_SCAN_BYTES",
    "MAX_RESYNC_WINDOW_BYTES",
    "MAX_SAMPLES",
    "MAX_SIDX_BYTES",
    "MAX_SIDX_TOTAL_BYTES",
    "MAX_TICKS",
    "MAX_TIMESCALE",
    "MAX_UNBACKED_SAMPLES",
    "check_ticks",
    "check_timescale",
]

MAX_SAMPLES = 1 << 24
MAX_UNBACKED_SAMPLES = 1 << 18
#: A sidx holds at most 65535 references of 12 bytes (< 800 KB).
MAX_SIDX_BYTES = 1 << 20
#: All nested sidx boxes of one file together.
MAX_SIDX_TOTAL_BYTES = 64 << 20
#: One moof, or the mfra.
MAX_FRAGMENT_BOX_BYTES = 64 << 20
#: Lanes of one fragment walk that start by resynchronising (besides the one from the first moof).
MAX_RESYNC_LANES = 32
#: Largest window one lane's scan reads in one round (windows double up to it).
MAX_RESYNC_WINDOW_BYTES = 1 << 20
#: Bytes all lanes' scans of one walk may read; past it the lanes still scanning give up.
MAX_RESYNC_SCAN_BYTES = 128 << 20
#: The fragment walk's header reads (moofs and the box headers between them) may total at most this.
MAX_INDEX_BYTES = 512 * 1024 * 1024
#: Edits in one elst (real files have one to a few; each costs a pass over the samples).
MAX_EDITS = 4096
#: An edit list may repeat samples (looping edits), up to this many times the
#: track's sample count in total.
MAX_EDIT_SAMPLES_FACTOR = 4
#: Any time in ticks; leaves headroom for sums of 2^32 durations in int64.
MAX_TICKS = 1 << 62
#: Timescales are int32 in FFmpeg (AVRational).
MAX_TIMESCALE = (1 << 31) - 1


def check_timescale(value: int, *, url: str, what: str) -> int:
    """``value`` if it fits FFmpeg's int32 time bases, else MP4ParseError.

    Zero is let through: callers apply FFmpeg's fallback (movie timescale, then 1).
    """
    if value > MAX_TIMESCALE:
        raise MP4ParseError(
            f"{url}: {what} timescale is {value}; expected 1..{MAX_TIMESCALE} ticks per second (the file is corrupt)."
        )
    return value


def check_ticks(value: int, *, url: str, what: str) -> int:
    """``value`` if ``|value| < 2^62`` (int64 arithmetic on it cannot overflow), else MP4ParseError."""
    if not -MAX_TICKS < value < MAX_TICKS:
        raise MP4ParseError(
            f"{url}: {what} is {value} ticks, beyond the {MAX_TICKS} a timeline can hold (the file is corrupt)."
        )
    return value
