"""Stage: CNN region features. A torchvision backbone, its feature maps (one or more depths)
pooled over superpixels (``segments`` sampled at each map's cells)."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torch_geometric.utils import scatter
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops import FrozenBatchNorm2d

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_weights(name: str, weights: str):
    """A torchvision weights entry of model ``name`` from ``"DEFAULT"``, a member name
    (``"IMAGENET1K_V1"``) or a full name (``"ResNet18_Weights.IMAGENET1K_V1"``).

    Raises:
        ValueError: no such weights for ``name``, naming the ones there are.
    """
    available = torchvision.models.get_model_weights(name)
    member = str(weights).split(".")[-1]
    prefix = str(weights).rpartition(".")[0]
    if member in available.__members__ and prefix in ("", available.__name__):
        return available[member]
    raise ValueError(
        f"backbone.weights={weights!r} is neither a file nor weights of {name}; choose from "
        f"{['DEFAULT', *(w.name for w in available)]} (or {available.__name__}.<one of them>), a "
        "state-dict file, or null for random initialisation"
    )


def fetch_weights(spec, fallback: str = "error") -> dict | None:
    """The state dict of torchvision weights ``spec``, as torchvision gets it: downloaded to
    the torch hub cache (``$TORCH_HOME/hub/checkpoints``) on first use, read from there
    afterwards. Processes of one machine take turns (a lock file beside the download), so
    that under DDP one downloads and the others wait, then read it.

    Returns:
        The state dict, or None (random weights, with a warning) when it cannot be had and
        ``fallback="random"``.

    Raises:
        FileNotFoundError: it cannot be had (no network, a broken or altered download),
            naming the URL and where to put the file.
    """
    from filelock import FileLock

    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(spec.url).path).name
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(f"{path}.lock"):
            if not path.is_file():
                log.info("downloading %s to %s (once: later runs read it there)", spec, path)
            return spec.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as err:  # URLError, a refused connection, a bad hash
        msg = (
            f"cannot get pretrained weights {spec} ({type(err).__name__}: {err}). Without a "
            f"network, download {spec.url} on a machine with one and put it at {path}, set "
            "backbone.weights to a local state-dict file, or set backbone.weights=null (or "
            "backbone.weights_fallback=random)."
        )
        if fallback == "random":
            log.warning("%s Using random weights.", msg)
            return None
        raise FileNotFoundError(msg) from err


def load_backbone(
    name: str, weights: str | None = None, weights_fallback: str = "error"
) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    """A torchvision classification model by name, its weights, and the input normalisation
    they were trained with.

    Args:
        name: any ``torchvision.models`` name (``resnet18``, ``convnext_tiny``, ...).
        weights: ``None`` (random init), torchvision weights of ``name`` (``"DEFAULT"``,
            ``"IMAGENET1K_V1"`` or ``"ResNet18_Weights.IMAGENET1K_V1"``: downloaded to the
            torch hub cache on first use, :func:`fetch_weights`), or the path of a local
            state-dict file.
        weights_fallback: ``"error"`` (default) or ``"random"``: what to do when named
            weights cannot be had.

    Returns:
        ``(model, mean, std)``: ``mean`` and ``std`` from the weights' own transforms
        (ImageNet's for random or local weights).
    """
    model = torchvision.models.get_model(name, weights=None)
    if weights is None:
        return model, IMAGENET_MEAN, IMAGENET_STD
    path = Path(str(weights)).expanduser()
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        model.load_state_dict(state)
        log.info("backbone %s: loaded weights from %s", name, path)
        return model, IMAGENET_MEAN, IMAGENET_STD
    spec = resolve_weights(name, str(weights))
    state = fetch_weights(spec, weights_fallback)
    if state is None:
        return model, IMAGENET_MEAN, IMAGENET_STD
    model.load_state_dict(state)
    log.info("backbone %s: pretrained weights %s", name, spec)
    preset = spec.transforms()
    mean = tuple(getattr(preset, "mean", IMAGENET_MEAN))
    std = tuple(getattr(preset, "std", IMAGENET_STD))
    return model, mean, std


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every ``BatchNorm2d`` replaced by a
    :class:`~torchvision.ops.FrozenBatchNorm2d` holding the same affine parameters and
    running statistics as buffers, as torchvision's detection models fine-tune their
    backbones: the convolutions train, the normalisation stays the one the weights were
    trained with (and a batch never changes it). Returns ``module`` (changed in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            if child.affine:
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)
    return module


def normalisation(key: str, given, default: tuple[float, ...]) -> tuple[float, ...]:
    """The per-channel input ``mean`` or ``std`` of a backbone: ``given`` (three numbers) or,
    when it is None, ``default`` (the weights' own)."""
    if given is None:
        return tuple(default)
    values = tuple(float(v) for v in given)
    if len(values) != 3 or (key == "std" and min(values) <= 0):
        raise ValueError(
            f"backbone.{key}={list(given)!r}: give three numbers, one per RGB channel"
            + (", all > 0" if key == "std" else "")
            + " (or null: the weights' own normalisation)"
        )
    return values


def cell_regions(segments: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The region of each cell of an ``h x w`` feature map: ``segments`` sampled at the
    cell centres.

    Shapes:
        segments ``[B, H, W]`` (batch-global region ids) -> ``[B*h*w]`` (row-major per image).
    """
    rows = ((torch.arange(h, device=segments.device) + 0.5) * segments.size(1) / h).long()
    cols = ((torch.arange(w, device=segments.device) + 0.5) * segments.size(2) / w).long()
    return segments[:, rows][:, :, cols].reshape(-1)


def pool_regions(
    fmap: torch.Tensor, segments: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor
) -> torch.Tensor:
    """Mean of a feature map over each region.

    ``segments`` is sampled at the centre of every feature-map cell; a region that no
    cell centre falls in (it vanished at that resolution) takes the bilinearly
    interpolated feature at its centroid instead, so every region gets a finite feature.

    Shapes:
        fmap ``[B, C, h, w]``, segments ``[B, H, W]`` (batch-global region ids),
        pos ``[N, 2]`` in ``[0, 1]``, batch ``[N]`` -> ``[N, C]``.
    """
    b, c, h, w = fmap.shape
    n = pos.size(0)
    ids = cell_regions(segments, h, w)  # (B*h*w,)
    cells = fmap.permute(0, 2, 3, 1).reshape(-1, c)  # (B*h*w, C)
    out = scatter(cells, ids, dim=0, dim_size=n, reduce="mean")  # (N, C)
    missing = torch.bincount(ids, minlength=n) == 0
    if missing.any():
        idx = missing.nonzero().squeeze(1)
        out = out.index_put((idx,), bilinear_at(cells, pos[idx], batch[idx], h, w))
    return out


def bilinear_at(
    cells: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """Bilinear interpolation of feature maps at normalised points (cell centres at
    ``(i + 0.5) / size``, edges clamped), from the four cells around each point.

    Shapes:
        cells ``[B*h*w, C]`` (each map flattened row-major), pos ``[K, 2]``, batch ``[K]``
        -> ``[K, C]``.
    """
    x = (pos[:, 0] * w - 0.5).clamp(0, w - 1)
    y = (pos[:, 1] * h - 0.5).clamp(0, h - 1)
    x0, y0 = x.floor().long(), y.floor().long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    fx, fy = (x - x0).unsqueeze(1).to(cells.dtype), (y - y0).unsqueeze(1).to(cells.dtype)
    base = batch * (h * w)
    top = cells[base + y0 * w + x0] * (1 - fx) + cells[base + y0 * w + x1] * fx  # (K, C)
    bottom = cells[base + y1 * w + x0] * (1 - fx) + cells[base + y1 * w + x1] * fx  # (K, C)
    return top * (1 - fy) + bottom * fy


class RegionFeatures(nn.Module):
    """Backbone feature maps pooled over superpixels.

    Args:
        name: torchvision model name (default ``resnet18``).
        return_nodes: the layers whose outputs are pooled, each over the regions at its own
            stride, and concatenated (default ``("layer2",)``: stride 8).
        last_stage: the node a classifier pools (default ``"layer4"``, resnet18's): read by
            the configs alone (``model=cnn_baseline`` sets ``return_nodes`` to it), so that
            each backbone config names its own.
        weights: see :func:`load_backbone` (default ``None``); the input normalisation
            follows the weights' own transforms.
        weights_fallback: ``error`` or ``random`` (default ``error``).
        trainable: train the backbone (default ``True``); frozen backbones stay in eval mode.
        freeze_bn: replace every BatchNorm by a :class:`~torchvision.ops.FrozenBatchNorm2d`
            with the weights' statistics (:func:`freeze_batch_norm`) while the convolutions
            train (default ``False``). For pretrained weights: batch statistics of a small
            batch would replace the ones they were trained with.
        lr_scale: the backbone's learning rate as a multiple of the model's (default 1.0),
            applied through the optimiser's parameter groups
            (:meth:`~graphvision.module.GraphVisionModule.make_optimizer`).
        mean, std: the input normalisation (per RGB channel); ``None`` (default) takes the
            weights' own (torchvision's transforms of named weights; ImageNet's for a local
            file or random weights).

    The three regimes of a pretrained backbone: frozen (``trainable=False``), frozen-BN
    fine-tuning (``freeze_bn=True``) and full fine-tuning (the defaults).

    Shapes:
        images ``[B, 3, H, W]`` in ``[0, 1]``, segments ``[B, H, W]``, pos ``[N, 2]``,
        batch ``[N]`` -> ``[N, out_channels]`` (the sum of the layers' channels).
    """

    def __init__(
        self,
        name: str = "resnet18",
        return_nodes: list[str] | tuple[str, ...] | str = ("layer2",),
        last_stage: str | None = "layer4",
        weights: str | None = None,
        weights_fallback: str = "error",
        trainable: bool = True,
        freeze_bn: bool = False,
        lr_scale: float = 1.0,
        mean: list[float] | tuple[float, ...] | None = None,
        std: list[float] | tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        nodes = [return_nodes] if isinstance(return_nodes, str) else list(return_nodes)
        if not nodes:
            raise ValueError(f"backbone.return_nodes of {name} is empty: name at least one layer")
        if not lr_scale > 0:
            raise ValueError(
                f"backbone.lr_scale={lr_scale!r}: must be > 0 (backbone.trainable=false freezes it)"
            )
        self.name, self.return_nodes, self.trainable = name, nodes, trainable
        self.freeze_bn, self.lr_scale = freeze_bn, float(lr_scale)
        model, weights_mean, weights_std = load_backbone(name, weights, weights_fallback)
        mean = normalisation("mean", mean, weights_mean)
        std = normalisation("std", std, weights_std)
        if freeze_bn:
            freeze_batch_norm(model)
        self.body = create_feature_extractor(model, {n: f"f{i}" for i, n in enumerate(nodes)})
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.body.eval()  # the probe below must not move BatchNorm's running statistics
        with torch.no_grad():
            maps = self.body(torch.zeros(1, 3, 64, 64)).values()
        self.body.train()
        self.channels = [int(m.shape[1]) for m in maps]
        self.out_channels = sum(self.channels)
        if not trainable:
            self.body.requires_grad_(False)
            self.body.eval()

    def train(self, mode: bool = True) -> RegionFeatures:
        super().train(mode)
        if not self.trainable:
            self.body.eval()  # frozen BatchNorm statistics stay frozen
        return self

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """One map per return node, in their order: ``[B, C_i, h_i, w_i]``."""
        return list(self.body((images - self.mean) / self.std).values())

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The last return node's map ``[B, C, h, w]`` (the only one, usually)."""
        return self.feature_maps(images)[-1]

    def forward(self, images, segments, pos, batch) -> torch.Tensor:
        maps = self.feature_maps(images)
        return torch.cat([pool_regions(m, segments, pos, batch) for m in maps], dim=1)  # (N, C)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name}, return_nodes={self.return_nodes}, "
            f"out_channels={self.out_channels}, trainable={self.trainable}, "
            f"freeze_bn={self.freeze_bn}, lr_scale={self.lr_scale})"
        )


class NoBackbone(nn.Module):
    """No CNN (``model/backbone=none``): every region is its descriptors alone
    (``model.descriptors``), as in the superpixel benchmarks, so that the graph and sequence
    stages can be measured on their own. No parameters; the image is not read.

    Args:
        last_stage: ``None``, the key every backbone config has (there is no stage a
            classifier could pool: ``model=cnn_baseline`` refuses this backbone).

    Shapes:
        images, segments, pos ``[N, 2]``, batch -> ``[N, 0]``.
    """

    out_channels = 0
    channels: list[int] = []
    lr_scale = 1.0
    trainable = False

    def __init__(self, last_stage: None = None) -> None:
        super().__init__()

    def forward(self, images, segments, pos, batch) -> torch.Tensor:
        return pos.new_zeros(pos.size(0), 0)  # (N, 0)

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        raise ValueError(
            "model/backbone=none has no feature maps: choose a backbone (model/backbone=resnet18)"
        )

    feature_map = feature_maps

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
