"""Regenerate ``videoloader/assets/sample.mp4``, the clip ``videoloader infer`` runs on with no URL.

A small H.264 MP4 (320x240, 4 s at 25 fps, keyframe every 25 frames, faststart)
showing a moving colour pattern: a drifting hue gradient, a bouncing white
square and the frame number as a bar code along the top edge, so every frame
differs visibly. Made with PyAV only (no ffmpeg binary)::

    python scripts/make_sample.py            # writes videoloader/assets/sample.mp4
    python scripts/make_sample.py out.mp4 --seconds 5

The output is deterministic for given arguments (same libx264 build).
"""

from __future__ import annotations

import argparse
import fractions
from pathlib import Path

import av
import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "videoloader" / "assets" / "sample.mp4"


def make_frame(i: int, num_frames: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 ``height x width x 3`` frame ``i``: moving hue gradient + bouncing square + bar code."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = 2 * np.pi * i / max(num_frames, 1)
    r = 127.5 + 127.5 * np.sin(2 * np.pi * xx / width + phase)
    g = 127.5 + 127.5 * np.sin(2 * np.pi * yy / height + 2 * phase + 2.0)
    b = 127.5 + 127.5 * np.sin(2 * np.pi * (xx + yy) / (width + height) - phase + 4.0)
    img = np.stack([r, g, b], axis=-1).astype(np.uint8)
    # A white square bouncing along a diagonal.
    side = height // 5
    t = i / max(num_frames - 1, 1)
    x0 = int(abs(((2 * t) % 2) - 1) * (width - side))
    y0 = int(abs(((3 * t) % 2) - 1) * (height - side))
    img[y0 : y0 + side, x0 : x0 + side] = 255
    # Frame number as 8 black/white cells along the top edge.
    cell = width // 8
    for bit in range(8):
        img[: height // 16, bit * cell : (bit + 1) * cell] = 255 if (i >> bit) & 1 else 0
    return img


def make_sample(out: Path, *, width: int = 320, height: int = 240, seconds: float = 4.0, fps: int = 25) -> Path:
    """Encode the sample clip to ``out`` and return its path."""
    num_frames = int(round(seconds * fps))
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = fractions.Fraction(1, fps)
        stream.codec_context.gop_size = fps
        stream.codec_context.options = {"crf": "30", "preset": "medium", "bf": "0", "sc_threshold": "0", "threads": "1"}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(make_frame(i, num_frames, width, height), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args()
    path = make_sample(args.out, width=args.width, height=args.height, seconds=args.seconds, fps=args.fps)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
    print(f"{path}: {path.stat().st_size} bytes, {n} frames, {s.codec_context.name} {s.width}x{s.height}")


if __name__ == "__main__":
    main()
