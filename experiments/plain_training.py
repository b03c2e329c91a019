"""The strongest simple baseline for COCO scene labels: a plain training of a torchvision
classifier on the multi-hot scene labels alone, written without graphvision.

What a newcomer would write: the photos resized to ``--size``, ImageNet's normalisation, the
network's classifier replaced by one linear layer to the 80 categories, BCE on the scene
labels, AdamW with cosine decay, no augmentation, the last epoch's model evaluated. Scene mAP
is the macro AP over the categories with a positive in the validation photos (the definition
of graphvision's ``val/scene_map``), computed here with scikit-learn-free torch code so that it
does not share graphvision's metric.

    python experiments/plain_training.py COCO_ROOT [--seeds 0 1 2] [--epochs 20]
        [--arch resnet18|mobilenet_v2] [--weights PATH] [--out plain.json]

Prints one line per seed (its final scene mAP) and the mean ± std; ``--out`` writes every
epoch's validation mAP per seed (the learning curves).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from pycocotools.coco import COCO
from torch import nn

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_split(root: Path, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 3, size, size]`` in [0, 1] and multi-hot labels ``[N, 80]`` (every
    annotation's category, crowds included, as graphvision's scene labels)."""
    coco = COCO(str(root / "annotations" / f"instances_{split}.json"))
    cats = sorted(coco.getCatIds())
    index = {c: i for i, c in enumerate(cats)}
    images, labels = [], []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        photo = Image.open(root / split / info["file_name"]).convert("RGB")
        photo = photo.resize((size, size), Image.BILINEAR)
        images.append(torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1))
        y = torch.zeros(len(cats))
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            y[index[ann["category_id"]]] = 1.0
        labels.append(y)
    return torch.stack(images).float() / 255, torch.stack(labels)


def average_precision(scores: torch.Tensor, target: torch.Tensor) -> float:
    """Macro AP over the categories with a positive: for each, the mean of the precision at
    the rank of every positive (scores sorted descending; ties broken by order)."""
    aps = []
    for c in range(target.size(1)):
        t = target[:, c]
        if t.sum() == 0:
            continue
        order = torch.argsort(scores[:, c], descending=True, stable=True)
        hits = t[order]
        precision = hits.cumsum(0) / torch.arange(1, hits.numel() + 1)
        aps.append(float((precision * hits).sum() / hits.sum()))
    return sum(aps) / len(aps)


def build(arch: str, weights: str | None, classes: int) -> nn.Module:
    model = torchvision.models.get_model(arch, weights=None)
    if weights:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    if arch.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, classes)
    else:  # mobilenet_v2: classifier = (dropout, linear)
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, classes)
    return model


def train_one(args, seed: int, train, val) -> list[float]:
    torch.manual_seed(seed)
    (xt, yt), (xv, yv) = train, val
    model = build(args.arch, args.weights, yt.size(1))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )
    steps = args.epochs * math.ceil(len(xt) / args.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.BCEWithLogitsLoss()
    curve = []
    for _epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(xt)).split(args.batch_size):
            loss = loss_fn(model((xt[idx] - MEAN) / STD), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            scores = torch.cat([model((x - MEAN) / STD) for x in xv.split(64)])
        curve.append(average_precision(scores, yv))
    return curve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="COCO-layout root (coco_tiny)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--weights", default=None, help="a local state-dict file (default: random)")
    p.add_argument("--out", type=Path, default=None, help="JSON of every epoch's val mAP")
    args = p.parse_args()
    train = load_split(args.root, "train2017", args.size)
    val = load_split(args.root, "val2017", args.size)
    curves, finals = {}, []
    for seed in args.seeds:
        started = time.perf_counter()
        curve = train_one(args, seed, train, val)
        curves[seed] = curve
        finals.append(curve[-1])
        print(f"seed {seed}: scene mAP {curve[-1]:.4f} ({time.perf_counter() - started:.0f} s)")
    std = statistics.stdev(finals) if len(finals) > 1 else 0.0
    print(f"plain {args.arch}: scene mAP {statistics.mean(finals):.4f} ± {std:.4f}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"root": str(args.root), "out": str(args.out)},
                    "curves": curves,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
