"""Batch inference over a list of video URLs with ``run_inference``.

    python examples/batch_inference.py --urls-file urls.txt --frames 4 --seed 0 --json result.json
    python examples/batch_inference.py https://example.com/a.mp4 --model resnet18 --weights DEFAULT

For each video: the top class of each sampled frame, the bytes fetched from
the origin and the time taken; then the totals. One failing video does not
stop the others; the exit status is 1 when any failed. ``--weights none``
uses a randomly initialised model (no download): enough to measure I/O and
decoding, not to trust the predictions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from videoloader import run_inference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="*", help="video URLs or paths")
    parser.add_argument("--urls-file", default=None, help="a file with one URL per line ('#' starts a comment)")
    parser.add_argument("--frames", type=int, default=4, help="frames per video")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="mobilenet_v3_small", help="a torchvision model name")
    parser.add_argument("--weights", default="DEFAULT", help="DEFAULT, a weights name, 'none' or a checkpoint path")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4, help="videos read concurrently")
    parser.add_argument("--json", type=Path, default=None, help="write the full result here")
    args = parser.parse_args(argv)

    urls = list(args.urls)
    if args.urls_file is not None:
        urls += [
            line.strip()
            for line in Path(args.urls_file).read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    if not urls:
        parser.error("give URLs or --urls-file")

    result = run_inference(
        video_urls=urls,
        frames_per_video=args.frames,
        random_seed=args.seed,
        model=args.model,
        weights=None if args.weights.lower() == "none" else args.weights,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    for v in result["videos"]:
        if v["ok"]:
            print(
                f"{v['index']:4d} {v['url']}: {', '.join(v['top_classes'])} | {v['bandwidth_upstream_bytes']} bytes "
                f"| {v['total_time_seconds']:.3f} s"
            )
        else:
            print(f"{v['index']:4d} {v['url']}: FAILED {v['error']['type']}: {v['error']['message']}")
    print(
        f"{result['num_succeeded']}/{result['num_videos']} videos ok, "
        f"{result['bandwidth_total_upstream_bytes']} bytes from the origin, "
        f"{result['total_pipeline_time_seconds']:.2f} s in all"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["num_failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
