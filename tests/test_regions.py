"""Regions: exact values on hand-made label maps, oracles against scikit-image and PyG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graphvision.regions import (
    RegionConfig,
    grid_labels,
    image_to_regions,
    region_adjacency,
    region_descriptors,
    region_graph,
    relabel_consecutive,
    slic_superpixels,
)

LABELS = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 2, 3],
    ]
)


def test_adjacency_exact_on_hand_made_map():
    edge_index, boundary = region_adjacency(LABELS)
    pairs = {(int(a), int(b)): int(n) for (a, b), n in zip(edge_index.T, boundary)}
    # 0-1: two horizontal contacts; 0-2: two vertical; 1-2: one vertical; 1-3: one vertical;
    # 2-3: one horizontal. 0-3 touch only diagonally: not adjacent under 4-connectivity.
    expected = {(0, 1): 2, (0, 2): 2, (1, 2): 1, (1, 3): 1, (2, 3): 1}
    assert pairs == {**expected, **{(b, a): n for (a, b), n in expected.items()}}
    assert edge_index.shape == (2, 10)
    assert not np.any(edge_index[0] == edge_index[1])


def test_descriptors_exact():
    image = np.zeros((3, 4, 3), dtype=np.uint8)
    image[:2, :2] = (255, 0, 0)
    image[:2, 2:] = (0, 255, 0)
    image[2, :3] = (0, 0, 255)
    image[2, 3] = (255, 255, 255)
    d = region_descriptors(image, LABELS)
    np.testing.assert_allclose(d["mean_colour"], [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    np.testing.assert_array_equal(d["area"], [4, 4, 3, 1])
    # centroid of region 0 = pixel (col 0.5, row 0.5) -> ((0.5 + 0.5) / 4, (0.5 + 0.5) / 3)
    np.testing.assert_allclose(d["pos"][0], [1 / 4, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(d["pos"][3], [3.5 / 4, 2.5 / 3], rtol=1e-6)
    # box of region 2: cols 0..2, row 2 -> (0, 2/3, 3/4, 1)
    np.testing.assert_allclose(d["x"][2, 9:13], [0, 2 / 3, 3 / 4, 1], rtol=1e-6)
    np.testing.assert_allclose(d["x"][:, 3:6], 0, atol=1e-6)  # single-colour regions
    np.testing.assert_allclose(d["x"][:, 8], [4 / 12, 4 / 12, 3 / 12, 1 / 12], rtol=1e-6)


def test_relabel_consecutive():
    out = relabel_consecutive(np.array([[7, 7, 3], [9, 3, 3]]))
    np.testing.assert_array_equal(out, [[1, 1, 0], [2, 0, 0]])


PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]


def _photo(name: str, size=(120, 160)) -> np.ndarray:
    import skimage.data

    from graphvision.regions import resize_image

    img = getattr(skimage.data, name)()
    return resize_image(img[..., :3], size)


@pytest.mark.parametrize("name", PHOTOS)
def test_adjacency_equals_skimage_rag(name):
    """Oracle: the same edges as scikit-image's region adjacency graph (4-connectivity)."""
    from skimage import graph

    image = _photo(name)
    labels = slic_superpixels(image, RegionConfig(size=image.shape[:2], n_segments=150))
    rag = graph.RAG(labels, connectivity=1)
    expected = {(int(a), int(b)) for a, b in rag.edges() if a != b}
    expected |= {(b, a) for a, b in expected}
    edge_index, _ = region_adjacency(labels)
    assert {(int(a), int(b)) for a, b in edge_index.T} == expected
    assert len(expected) > 100


@pytest.mark.parametrize("name", PHOTOS[:3])
def test_descriptors_equal_pyg_toslic(name):
    """Oracle: mean colours and centroids equal PyG ToSLIC's ``x`` and ``pos``."""
    from torch_geometric.transforms import ToSLIC

    image = _photo(name)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    data = ToSLIC(add_seg=True, n_segments=100, compactness=10)(tensor)
    seg = data.seg.view(image.shape[:2]).numpy()
    d = region_descriptors(image, seg)
    np.testing.assert_allclose(d["mean_colour"], data.x.numpy(), atol=1e-5)
    h, w = seg.shape
    # graphvision normalises pixel centres to [0, 1]; ToSLIC keeps pixel indices.
    pixel_pos = d["pos"] * np.array([w, h]) - 0.5
    np.testing.assert_allclose(pixel_pos, data.pos.numpy(), atol=1e-3)


def test_graph_on_real_photo_is_valid():
    g = image_to_regions(
        _photo("astronaut", (240, 320)), RegionConfig(size=(128, 128), n_segments=100)
    )
    n = g["x"].shape[0]
    assert g["segments"].shape == (128, 128) and set(np.unique(g["segments"])) == set(range(n))
    ei = g["edge_index"]
    assert set(map(tuple, ei.T)) == set(map(tuple, ei[::-1].T))  # symmetric
    assert not np.any(ei[0] == ei[1])
    assert set(np.unique(ei)) == set(range(n))  # every region has a neighbour here
    assert np.isfinite(g["x"]).all() and np.isfinite(g["edge_attr"]).all()
    assert g["edge_attr"].shape == (ei.shape[1], 5)


@pytest.mark.parametrize("shape", [(8, 8, 3), (1, 1, 3), (64, 64, 3)])
def test_degenerate_images_give_valid_graphs(shape):
    """An 8x8 image, a 1x1 image and a flat image (one region) give finite graphs."""
    image = np.full(shape, 120, dtype=np.uint8)
    if shape[0] == 8:
        image[:4] = 30
    g = region_graph(image, slic_superpixels(image, RegionConfig(size=shape[:2], n_segments=50)))
    assert g["x"].shape[0] >= 1
    assert np.isfinite(g["x"]).all() and np.isfinite(g["edge_attr"]).all()
    if g["x"].shape[0] == 1:
        assert g["edge_index"].shape == (2, 0)


def test_segmentation_is_deterministic():
    image = _photo("coffee")
    cfg = RegionConfig(size=image.shape[:2], n_segments=80)
    np.testing.assert_array_equal(slic_superpixels(image, cfg), slic_superpixels(image, cfg))


@pytest.mark.parametrize("name", PHOTOS[:2])
def test_rgb_to_lab_equals_skimage(name):
    """Oracle: the fast float32 conversion equals scikit-image's rgb2lab."""
    from skimage.color import rgb2lab

    from graphvision.regions.superpixels import rgb_to_lab

    image = _photo(name)
    np.testing.assert_allclose(rgb_to_lab(image), rgb2lab(image), atol=2e-3)


def test_opencv_backend_gives_a_valid_graph():
    pytest.importorskip("cv2", reason="the opencv extra is not installed")
    image = _photo("astronaut")
    labels = slic_superpixels(
        image, RegionConfig(size=image.shape[:2], n_segments=100, backend="opencv")
    )
    n = int(labels.max()) + 1
    assert set(np.unique(labels)) == set(range(n)) and 50 <= n <= 150
    g = region_graph(image, labels)
    assert np.isfinite(g["x"]).all() and g["edge_index"].shape[1] > n


def test_grid_backend_exact_patches_and_4_adjacency():
    """backend=grid on a 7x9 image, 6 patches: the grid closest to square patches is 2 rows
    x 3 columns (3.5x3 px rather than 2.3x4.5); rows 0-3 and 4-6, columns 0-2, 3-5, 6-8.
    Its region graph is the hand-built 4-adjacency of the patches: no diagonal pairs."""
    expected = np.array([[0] * 3 + [1] * 3 + [2] * 3] * 4 + [[3] * 3 + [4] * 3 + [5] * 3] * 3)
    assert np.array_equal(grid_labels((7, 9), 6), expected)
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    labels = slic_superpixels(image, RegionConfig(size=(7, 9), n_segments=6, backend="grid"))
    assert np.array_equal(labels, expected)
    edge_index, boundary = region_adjacency(labels)
    # left/right neighbours share the patch row's height (4 or 3 rows), up/down neighbours a
    # patch column's width (3 columns)
    hand = {(0, 1): 4, (1, 2): 4, (3, 4): 3, (4, 5): 3, (0, 3): 3, (1, 4): 3, (2, 5): 3}
    pairs = {(int(a), int(b)): int(n) for (a, b), n in zip(edge_index.T, boundary)}
    assert pairs == {**hand, **{(b, a): n for (a, b), n in hand.items()}}


@pytest.mark.parametrize(
    ("size", "n", "shape"),
    [
        ((224, 224), 196, (14, 14)),
        ((160, 160), 64, (8, 8)),
        ((120, 160), 12, (3, 4)),
        ((160, 160), 7, (7, 1)),
    ],
)
def test_grid_backend_gives_exactly_the_requested_count(size, n, shape):
    from graphvision.regions.superpixels import grid_shape

    assert grid_shape(size, n) == shape
    image = _photo("astronaut")
    g = image_to_regions(image, RegionConfig(size=size, n_segments=n, backend="grid"))
    assert g["x"].shape[0] == n and int(g["segments"].max()) + 1 == n
    counts = np.bincount(g["segments"].ravel(), minlength=n)
    rows, cols = shape
    # patch sides differ by at most one pixel
    assert counts.min() >= (size[0] // rows) * (size[1] // cols)
    assert counts.max() <= -(-size[0] // rows) * -(-size[1] // cols)


def test_grid_backend_refuses_a_count_the_size_cannot_hold():
    with pytest.raises(ValueError, match=r"regions.n_segments=17 patches do not fit a 4x4 grid"):
        RegionConfig(size=(4, 4), n_segments=17, backend="grid")


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="regions.backend='fast'"):
        RegionConfig(backend="fast")


@pytest.mark.parametrize("name", PHOTOS[:3])
def test_fast_slic_equals_skimage_slic(name):
    """Oracle: the float32 Lab front end gives scikit-image's own slic labels."""
    from skimage.segmentation import slic

    image = _photo(name, (160, 160))
    for n in (100, 400):
        mine = slic_superpixels(image, RegionConfig(size=(160, 160), n_segments=n))
        theirs = slic(image, n_segments=n, compactness=10.0, max_num_iter=4, start_label=0)
        np.testing.assert_array_equal(mine, relabel_consecutive(theirs))


def test_grid_tokens_through_the_data_module(tmp_path):
    """backend=grid through pre-processing, cache and loader: every image has exactly the
    requested tokens, and ``regions_per_image`` (what a run's summary reports) says so;
    SLIC's count only approximates its target."""
    from graphvision.data import SyntheticDataModule

    def module(backend):
        dm = SyntheticDataModule(
            data_dir=str(tmp_path),
            cache_dir=str(tmp_path / "cache"),
            num_train=4,
            num_val=4,
            batch_size=4,
            prepare_workers=1,
            regions={"size": [64, 64], "n_segments": 16, "backend": backend},
        )
        dm.prepare_data()
        dm.setup("fit")
        return dm

    grid = module("grid")
    batch = next(iter(grid.val_dataloader()))
    assert torch.equal(torch.bincount(batch.batch), torch.full((4,), 16))
    assert grid.regions_per_image("val") == 16.0
    counts = [g.num_nodes for g in module("skimage").datasets["val"]]
    assert module("skimage").regions_per_image("val") == sum(counts) / 4
