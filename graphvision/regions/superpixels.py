"""Superpixel segmentation (SLIC) at a fixed working resolution."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from graphvision.regions.graph import region_graph, relabel_consecutive


@dataclass(frozen=True)
class RegionConfig:
    """How an image becomes regions. Every field is part of the cache key."""

    size: tuple[int, int] = (128, 128)  # working resolution (H, W) the CNN and SLIC see
    n_segments: int = 100  # SLIC's target number of regions
    compactness: float = 10.0  # SLIC colour/space trade-off (higher = squarer regions)
    max_num_iter: int = 10  # SLIC k-means iterations
    sigma: float = 0.0  # Gaussian pre-smoothing of SLIC's input

    def __post_init__(self) -> None:
        size = tuple(int(s) for s in self.size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"regions.size must be [H, W] with positive sides, got {self.size}")
        object.__setattr__(self, "size", size)
        if self.n_segments < 1:
            raise ValueError(f"regions.n_segments must be >= 1, got {self.n_segments}")

    def as_dict(self) -> dict:
        return {**asdict(self), "size": list(self.size)}


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes an ``[H, W, 3]`` uint8 image to ``size = (H, W)`` with bilinear filtering."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def slic_superpixels(image: np.ndarray, cfg: RegionConfig) -> np.ndarray:
    """SLIC label map ``[H, W]`` with consecutive ids ``0..N-1`` (deterministic)."""
    from skimage.segmentation import slic  # heavy import, only where needed

    labels = slic(
        image,
        n_segments=cfg.n_segments,
        compactness=cfg.compactness,
        max_num_iter=cfg.max_num_iter,
        sigma=cfg.sigma,
        start_label=0,
        channel_axis=-1,
        enforce_connectivity=True,
    )
    return relabel_consecutive(labels)


def image_to_regions(image: np.ndarray, cfg: RegionConfig) -> dict[str, np.ndarray]:
    """Resizes ``image`` to the working resolution, segments it and builds its region graph.

    Returns the resized ``image`` ``[H, W, 3]`` uint8 plus the fields of
    :func:`graphvision.regions.graph.region_graph`.
    """
    image = resize_image(image, cfg.size)
    labels = slic_superpixels(image, cfg)
    return {"image": image, **region_graph(image, labels)}
