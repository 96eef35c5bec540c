"""Random frames from one remote video, reading only the bytes those frames need.

    python examples/random_frames.py https://example.com/video.mp4 --frames 4 --seed 0 --out-dir frames/

Prints the video's metadata, the frames drawn (index and time), their tensor
shape, and how many bytes came over the network compared with the file size.
With ``--out-dir`` each frame is also written as a PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from videoloader import VideoReader
from videoloader.job import encode_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="video URL (https://, s3://, gs://...) or local path")
    parser.add_argument("--frames", type=int, default=4, help="frames to draw (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the draw")
    parser.add_argument("--backend", default="auto", help="decoder backend (default auto)")
    parser.add_argument("--out-dir", type=Path, default=None, help="write each frame as a PNG here")
    args = parser.parse_args(argv)

    with VideoReader(args.url, backend=args.backend) as reader:
        m = reader.metadata
        print(
            f"{reader.url}: {m.codec} {m.width}x{m.height}, {m.num_frames} frames, {m.fps:.2f} fps, "
            f"{m.duration_seconds:.2f} s, read via {m.access_path}"
        )

        rng = np.random.default_rng(args.seed)
        count = min(args.frames, m.num_frames)
        indices = sorted(int(i) for i in rng.choice(m.num_frames, size=count, replace=False))
        batch = reader.get_frames_at(indices)

        print(f"frames {indices} at {[round(t, 3) for t in batch.pts_seconds.tolist()]} s")
        print(f"tensor {tuple(batch.data.shape)} {batch.data.dtype}")
        stats = reader.transfer_stats
        size = reader.index.file_size if reader.index is not None else None
        of_file = f" of a {size}-byte file" if size else ""
        print(f"transferred {stats.bytes_received} bytes in {stats.num_requests} requests{of_file}")

        if args.out_dir is not None:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            for index, frame in zip(indices, batch.data, strict=True):
                (args.out_dir / f"frame{index:06d}.png").write_bytes(encode_png(frame))
            print(f"wrote {len(indices)} PNG files to {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
