"""Same function across a refactor: builds each model with seed 0 from the real config, runs
one training batch and one validation batch of the synthetic data through it and saves the
outputs, losses and initial weights; ``compare`` rebuilds them with the code checked out now
and checks every tensor is bit-identical.

    python experiments/same_function.py save /tmp/before.pt     # on the old commit
    python experiments/same_function.py compare /tmp/before.pt  # on the new one

It touches only what every version offers: the Hydra configs, ``graphvision.utils``'
``CONFIG_DIR`` and ``build_datamodule``, and the LightningModule's ``net`` and ``losses``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_class, instantiate

from graphvision.utils import CONFIG_DIR, build_datamodule

MODELS = {
    "default": [],
    "deepseek_v3": ["model/sequence=deepseek_v3"],
    "pretrained_lm": ["model/sequence=pretrained_lm"],
    "gnn_none": ["model/gnn=none"],
    "sequence_none": ["model/sequence=none"],
    "backbone_none": ["model/backbone=none"],
    "gatv2": ["model/gnn=gatv2"],
    "gated_gcn": ["model/gnn=gated_gcn"],
    "cnn_baseline": ["model=cnn_baseline"],
}


def run(name: str, overrides: list[str], data_dir: Path) -> dict[str, torch.Tensor]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.data_dir={data_dir}",
                "paths.output_dir=/tmp/same_function",
                "data.num_train=16",
                "data.num_val=8",
                "data.batch_size=4",
                "data.prepare_workers=1",
                *overrides,
            ],
        )
    L.seed_everything(0, workers=True)
    datamodule = build_datamodule(cfg.data, get_class(cfg.model.task._target_))
    datamodule.prepare_data()
    datamodule.setup("fit")
    L.seed_everything(0, workers=True)
    model = instantiate(cfg.model, info=datamodule.info, data_config=None)
    saved = {f"weight/{k}": v.detach().clone() for k, v in model.state_dict().items()}
    for split, batch in (
        ("train", next(iter(datamodule.train_dataloader()))),
        ("val", next(iter(datamodule.val_dataloader()))),
    ):
        model.train(split == "train")
        torch.manual_seed(1)
        with torch.no_grad():
            out = model.net(
                batch,
                return_attention=model.net.sequence is not None
                if hasattr(model.net, "sequence")
                else False,
            )
            losses = model.losses(out, batch)
        saved |= {
            f"{split}/out/{k}": v.detach().clone()
            for k, v in out.items()
            if isinstance(v, torch.Tensor)
        }
        saved |= {f"{split}/loss/{k}": v.detach().clone() for k, v in losses.items()}
    print(f"{name}: {len(saved)} tensors")
    return saved


def main(action: str, path: str) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="same_function_"))
    got = {name: run(name, ov, data_dir) for name, ov in MODELS.items()}
    if action == "save":
        torch.save(got, path)
        print(f"saved {path}")
        return 0
    before = torch.load(path, weights_only=True)
    failed = 0
    for name, tensors in before.items():
        now = got[name]
        keys = set(tensors) | set(now)
        diff = sorted(
            k
            for k in keys
            if k not in tensors
            or k not in now
            or tensors[k].shape != now[k].shape
            or not torch.equal(tensors[k], now[k])
        )
        # parameter names may change with the layout: compare weights by position as well
        w_before = [v for k, v in tensors.items() if k.startswith("weight/")]
        w_now = [v for k, v in now.items() if k.startswith("weight/")]
        same_weights = len(w_before) == len(w_now) and all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(w_before, w_now)
        )
        outputs = [k for k in diff if not k.startswith("weight/")]
        ok = not outputs and same_weights
        failed += not ok
        renamed = sum(k.startswith("weight/") for k in diff) // 2
        print(
            f"{name}: {'bit-identical' if ok else 'DIFFERENT'} "
            f"({len(tensors)} tensors; {renamed} weights renamed; differing: {outputs[:6]})"
        )
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
