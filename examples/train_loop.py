"""A training loop over remote videos: ``VideoFrameDataset`` + ``DataLoader`` + a tiny model.

    python examples/train_loop.py https://example.com/a.mp4 https://example.com/b.mp4 \
        --epochs 2 --batch-size 2 --clip 8 --size 112 112 --workers 2

Each video gets a label (its position modulo ``--classes``: a stand-in for
real labels). Every item is a clip of ``--clip`` consecutive frames chosen at
random, scaled by the decoder to ``--size``; the model averages the clip over
time, runs two small convolutions and predicts the label. The loss and the
bytes each batch fetched are printed per step.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from videoloader import RandomClip, VideoFrameDataset


class TinyClipNet(nn.Module):
    """Mean over time, two strided convolutions, global pooling, a linear head."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.float().div(255.0).mean(dim=1)  # B x T x C x H x W -> B x C x H x W
        return self.head(self.features(x).flatten(1))


def read_urls(args: argparse.Namespace) -> list[str]:
    urls = list(args.urls)
    if args.urls_file is not None:
        urls += [
            line.strip()
            for line in Path(args.urls_file).read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    return urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="*", help="video URLs or paths")
    parser.add_argument("--urls-file", default=None, help="a file with one URL per line")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--clip", type=int, default=8, help="consecutive frames per item")
    parser.add_argument("--size", type=int, nargs=2, default=(112, 112), metavar=("H", "W"))
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    urls = read_urls(args)
    if not urls:
        parser.error("give at least one URL")

    torch.manual_seed(args.seed)
    sources = [{"url": url, "label": i % args.classes} for i, url in enumerate(urls)]
    dataset = VideoFrameDataset(sources, RandomClip(args.clip), seed=args.seed, output_size=tuple(args.size))
    loader = DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, persistent_workers=args.workers > 0
    )
    model = TinyClipNet(args.classes)
    optimiser = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    step = 0
    for epoch in range(args.epochs):
        dataset.set_epoch(epoch)  # a new draw of clips each epoch (reaches persistent workers too)
        for batch in loader:
            logits = model(batch["frames"])
            loss = loss_fn(logits, batch["label"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            fetched = int(batch["transfer"]["bytes_received"].sum())
            print(
                f"epoch {epoch} step {step} loss {loss.item():.4f} clips {tuple(batch['frames'].shape)} "
                f"fetched {fetched} bytes"
            )
            if not math.isfinite(loss.item()):
                print("loss is not finite: stopping")
                return 1
            step += 1
    print(f"done: {step} steps over {len(dataset)} videos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
