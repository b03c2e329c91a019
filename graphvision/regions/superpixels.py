"""Superpixel segmentation (SLIC) at a fixed working resolution.

The fast path is the working resolution: SLIC on a 160x160 copy of a 640x480 photo with
4 k-means iterations costs ~8 ms here instead of ~170 ms at native size, at an ASA no
lower than native SLIC's (``python -m graphvision.bench regions`` measures both). Three
backends: ``skimage`` (scikit-image's SLIC, the default), ``opencv`` (OpenCV ximgproc's
SLIC, which keeps closer to the requested region count; needs the ``opencv`` extra) and
``grid`` (exactly ``n_segments`` rectangular patches, :func:`grid_labels`: ViT-style patch
tokens through the same graph builder, cache and model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from graphvision.regions.graph import EDGES, region_graph, relabel_consecutive

BACKENDS = ("skimage", "opencv", "grid")


@dataclass(frozen=True)
class RegionConfig:
    """How an image becomes regions. Every field is part of the cache key."""

    size: tuple[int, int] = (128, 128)  # working resolution (H, W) the CNN and SLIC see
    n_segments: int = 100  # SLIC's target number of regions
    compactness: float = 10.0  # SLIC colour/space trade-off (higher = squarer regions)
    max_num_iter: int = 4  # SLIC k-means iterations (4 is within 0.005 ASA of 10, 40% faster)
    sigma: float = 0.0  # Gaussian pre-smoothing of SLIC's input (skimage backend)
    backend: str = "skimage"  # skimage | opencv | grid
    edges: str = "adjacency"  # adjacency (regions that touch) | knn (the superpixel benchmarks')
    k: int = 8  # neighbours of each region with edges=knn
    knn_colour: bool = False  # edges=knn: nearest in position and mean colour (not position alone)

    def __post_init__(self) -> None:
        size = tuple(int(s) for s in self.size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"regions.size must be [H, W] with positive sides, got {self.size}")
        object.__setattr__(self, "size", size)
        if self.n_segments < 1:
            raise ValueError(f"regions.n_segments must be >= 1, got {self.n_segments}")
        if self.backend not in BACKENDS:
            raise ValueError(f"regions.backend={self.backend!r}: choose one of {BACKENDS}")
        if self.edges not in EDGES:
            raise ValueError(f"regions.edges={self.edges!r}: choose one of {EDGES}")
        if self.k < 1:
            raise ValueError(f"regions.k={self.k}: a k-nearest-neighbour graph needs k >= 1")
        if self.backend == "grid":
            grid_shape(
                self.size, self.n_segments
            )  # a count the working size cannot hold fails here

    def as_dict(self) -> dict:
        """The fields, as the cache key holds them; the graph fields only when they are not
        the default adjacency graph (caches built before there was a choice stay valid)."""
        out = {**asdict(self), "size": list(self.size)}
        if self.edges == "adjacency":
            del out["edges"], out["k"], out["knn_colour"]
        return out


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes an ``[H, W, 3]`` uint8 image to ``size = (H, W)`` with bilinear filtering."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


# sRGB (D65) -> XYZ, and the D65 reference white, as scikit-image's rgb2lab uses them
_XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=np.float32,
)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


def rgb_to_lab(image: np.ndarray, stretch: bool = False) -> np.ndarray:
    """CIE L*a*b* of a uint8 sRGB image, float32 ``[H, W, 3]``: scikit-image's ``rgb2lab``
    (D65, 2 degrees) in float32 through a 256-entry lookup table, ~4x faster.

    With ``stretch``, the image is first rescaled so that its darkest value is 0 and its
    brightest 1, as scikit-image's ``slic`` does before converting.
    """
    lo, hi = (int(image.min()), int(image.max())) if stretch else (0, 255)
    values = np.clip(
        (np.arange(256, dtype=np.float64) - lo) / max(hi - lo, 1), 0.0, 1.0
    )  # unused ends clipped
    linear = _srgb_to_linear(values).astype(np.float32)[image]  # (H, W, 3)
    xyz = (linear @ (_XYZ_FROM_RGB.T / _WHITE)).astype(np.float32)  # normalised by the white point
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def grid_shape(size: tuple[int, int], n: int) -> tuple[int, int]:
    """``(rows, cols)`` with ``rows * cols == n`` whose patches are closest to square on an
    image of ``size = (H, W)`` (ties: more rows); a ``ValueError`` if no such pair fits.

    A square count on a square image gives a square grid (196 on 224x224: 14x14); a prime
    count can only give strips (7: 1x7 or 7x1), so choose counts with a near-square factor
    pair.
    """
    h, w = size
    pairs = [(r, n // r) for r in range(1, n + 1) if n % r == 0 and r <= h and n // r <= w]
    if not pairs:
        raise ValueError(
            f"regions.n_segments={n} patches do not fit a {h}x{w} grid (backend=grid): at most "
            f"{h * w}"
        )
    return min(pairs, key=lambda rc: (round(abs(np.log(h * rc[1] / (w * rc[0]))), 9), -rc[0]))


def grid_labels(size: tuple[int, int], n: int) -> np.ndarray:
    """Label map ``[H, W]`` of exactly ``n`` patches in :func:`grid_shape`'s rows and
    columns, numbered row-major; patch sides differ by at most one pixel (row ``y`` belongs
    to patch row ``y * rows // H``)."""
    h, w = size
    rows, cols = grid_shape(size, n)
    row = np.arange(h, dtype=np.int64) * rows // h
    col = np.arange(w, dtype=np.int64) * cols // w
    return row[:, None] * cols + col[None, :]


def slic_superpixels(image: np.ndarray, cfg: RegionConfig) -> np.ndarray:
    """Label map ``[H, W]`` with consecutive ids ``0..N-1`` (deterministic): SLIC's, or the
    patches of :func:`grid_labels` with ``backend=grid``."""
    if cfg.backend == "grid":
        return grid_labels(image.shape[:2], cfg.n_segments)
    if cfg.backend == "opencv":
        return _opencv_slic(image, cfg)
    from skimage.segmentation import slic  # heavy import, only where needed

    # scikit-image's slic stretches the image to [0, 1] and converts it to Lab; done here in
    # float32 instead. slic then rescales its (non-RGB) input to [0, 1]: dividing the
    # compactness by the Lab range it divides by keeps the clustering identical.
    lab = rgb_to_lab(np.asarray(image, dtype=np.uint8), stretch=True)
    lab_range = float(lab.max() - lab.min()) or 1.0
    labels = slic(
        lab,
        convert2lab=False,
        n_segments=cfg.n_segments,
        compactness=cfg.compactness / lab_range,
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
    return {"image": image, **region_graph(image, labels, cfg.edges, cfg.k, cfg.knn_colour)}


def _opencv_slic(image: np.ndarray, cfg: RegionConfig) -> np.ndarray:
    try:
        import cv2
    except ImportError as err:
        raise ImportError(
            'regions.backend=opencv needs OpenCV\'s contrib modules: pip install -e ".[opencv]" '
            "(opencv-contrib-python-headless), or use regions.backend=skimage"
        ) from err
    h, w = image.shape[:2]
    region_size = max(2, int(round((h * w / cfg.n_segments) ** 0.5)))
    lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB)
    slic = cv2.ximgproc.createSuperpixelSLIC(
        lab, cv2.ximgproc.SLIC, region_size, float(cfg.compactness)
    )
    slic.iterate(cfg.max_num_iter)
    slic.enforceLabelConnectivity(25)
    return relabel_consecutive(slic.getLabels())
