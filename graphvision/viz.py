"""Pictures of region graphs, predictions, attention and scene graphs (matplotlib,
networkx), and ``to_networkx`` for analysis of one's own.

Every drawing function takes an optional ``ax`` and returns it, so they compose into
figures in notebooks; images are ``[H, W, 3]`` arrays or ``[3, H, W]`` tensors in [0, 1]
or uint8.
"""

from __future__ import annotations

import numpy as np
import torch

from graphvision.regions.quality import boundary_map


def _as_image(image) -> np.ndarray:
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * 255.0, 0, 255).astype(np.uint8)
    return arr


def one_per_pair(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Which edges stand for their pair of regions: ``src < dst`` of a pair joined both ways,
    and the one edge of a pair joined one way (``data.regions.edges=knn``). ``[E]`` bool."""
    pairs = set(zip(src.tolist(), dst.tolist()))
    return np.array([s < d or (d, s) not in pairs for s, d in zip(src.tolist(), dst.tolist())])


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def upsample_labels(labels, size: tuple[int, int]) -> torch.Tensor:
    """A label map ``[h, w]`` (region or instance ids) at ``size`` ``(H, W)``, nearest
    neighbour: the working resolution's regions drawn over the photo at its own size."""
    labels = torch.as_tensor(labels)
    up = torch.nn.functional.interpolate(
        labels[None, None].double(), size=tuple(size), mode="nearest"
    )
    return up[0, 0].to(labels.dtype)


def file_figure(nrows: int = 1, ncols: int = 1, figsize=(6, 6)):
    """A figure to save to a file, made without pyplot: no backend is switched (a notebook
    keeps its own) and nothing stays open. Returns the figure and ``axes [nrows, ncols]``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _axes(ax, size=(6, 6)):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=size)
    return ax


def draw_region_graph(
    image,
    segments,
    pos,
    edge_index,
    values=None,
    ax=None,
    cmap: str = "viridis",
    label: str | None = None,
    node_size: float = 18.0,
    edges: bool = True,
    boundaries: bool = True,
):
    """The image with its superpixel boundaries and its region graph on top: nodes at the
    region centroids, an edge between adjacent regions, nodes coloured by ``values``
    (one per region: a prediction, an attention weight, an attribution) with a colour bar
    titled ``label``."""
    ax = _axes(ax)
    img = _as_image(image).copy()
    seg = _np(segments)
    h, w = seg.shape
    if boundaries:
        img[boundary_map(seg)] = (255, 255, 0)
    ax.imshow(img)
    xy = _np(pos) * np.array([w, h]) - 0.5
    if edges and _np(edge_index).size:
        from matplotlib.collections import LineCollection

        src, dst = _np(edge_index)
        keep = one_per_pair(src, dst)
        ax.add_collection(
            LineCollection(
                np.stack([xy[src[keep]], xy[dst[keep]]], 1),
                colors="white",
                linewidths=0.6,
                alpha=0.7,
            )
        )
    colours = "red" if values is None else _np(values)
    sc = ax.scatter(
        xy[:, 0],
        xy[:, 1],
        c=colours,
        s=node_size,
        cmap=cmap,
        edgecolors="black",
        linewidths=0.4,
        zorder=3,
    )
    if values is not None:
        ax.figure.colorbar(sc, ax=ax, fraction=0.046, pad=0.04, label=label)
    ax.set_axis_off()
    return ax


def draw_region_values(
    image,
    segments,
    values,
    ax=None,
    cmap: str = "magma",
    alpha: float = 0.6,
    label: str | None = None,
):
    """Each region painted with its value over the image (e.g. attention), with a colour bar."""
    ax = _axes(ax)
    seg = _np(segments)
    vals = _np(values).astype(float)
    ax.imshow(_as_image(image))
    im = ax.imshow(vals[seg], cmap=cmap, alpha=alpha)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    ax.set_axis_off()
    return ax


def draw_scene_graph(
    image, boxes, labels, rel_index, rel_labels, ax=None, max_relations: int = 12, masks=None
):
    """Objects (boxes in normalised ``x0, y0, x1, y1``, with names) and relations (arrows
    from subject to object centre, labelled) over the image; with ``masks`` (one ``[H, W]``
    mask per object, at the image's size) each object's outline instead of its box."""
    from matplotlib.patches import FancyArrowPatch, Rectangle

    ax = _axes(ax)
    img = _as_image(image)
    h, w = img.shape[:2]
    ax.imshow(img)
    box = _np(boxes).reshape(-1, 4) * np.array([w, h, w, h])
    colours = [f"C{i % 10}" for i in range(len(box))]
    for i, ((x0, y0, x1, y1), name, c) in enumerate(zip(box, labels, colours)):
        if masks is not None and _np(masks[i]).any():
            ax.contour(_np(masks[i]).astype(float), levels=[0.5], colors=[c], linewidths=1.5)
        else:
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=c, linewidth=1.5)
            )
        ax.text(
            x0,
            y0,
            name,
            color="white",
            fontsize=7,
            va="bottom",
            bbox={"facecolor": c, "pad": 1, "lw": 0},
        )
    centre = (
        np.stack([(box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2], 1) if len(box) else box
    )
    rel = _np(rel_index).reshape(2, -1)
    for k, (s, o) in enumerate(rel.T[:max_relations]):
        ax.add_patch(
            FancyArrowPatch(
                centre[s],
                centre[o],
                arrowstyle="-|>",
                mutation_scale=8,
                color="white",
                lw=0.8,
                alpha=0.8,
            )
        )
        mid = 0.65 * centre[s] + 0.35 * centre[o]  # nearer the subject: s -> o and o -> s apart
        ax.text(
            mid[0],
            mid[1],
            rel_labels[k],
            fontsize=6,
            color="black",
            ha="center",
            bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5, "lw": 0},
        )
    ax.set_axis_off()
    return ax


def plot_confusion(confusion: torch.Tensor, names: list[str], path, title: str) -> None:
    """A confusion matrix ``[K, K]`` (rows: true, columns: predicted) as a PNG: each cell
    coloured by its share of the row and labelled with its count."""
    counts = confusion.double()
    rates = counts / counts.sum(1, keepdim=True).clamp_min(1)
    fig, axes = file_figure(figsize=(5.5, 5))
    ax = axes[0, 0]
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                int(counts[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def draw_prediction(prediction, path) -> None:
    """A :class:`~graphvision.predictor.Prediction`'s PNG at ``path``: the region graph
    coloured by the CLS token's attention (last layer) over the photo at its own size,
    titled by the task's prediction (``title()``), then its panels (``panels(image)``:
    scene graphs draw their objects and relations)."""
    graph, result = prediction.graph, prediction.result
    image, segments = prediction.photo, upsample_labels(graph.segments, prediction.photo.shape[:2])
    h, w = segments.shape
    panels = result.panels(image)
    height = 5.5 * min(max(h / w, 0.5), 2.0)
    fig, axes = file_figure(1, 1 + len(panels), figsize=(6 * (1 + len(panels)), height))
    draw_region_graph(
        image,
        segments,
        graph.pos,
        graph.edge_index,
        values=prediction.outputs["attention"][-1],
        ax=axes[0, 0],
        cmap="magma",
        label="CLS attention (last layer)",
    )
    axes[0, 0].set_title(result.title(), fontsize=8)
    for ax, draw in zip(axes[0, 1:], panels):
        draw(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def scene_graph_networkx(labels, rel_index, rel_labels):
    """The scene graph as a ``networkx.MultiDiGraph``: node ``i`` with ``label``, an edge per
    relation with ``relation``."""
    import networkx as nx

    g = nx.MultiDiGraph()
    for i, name in enumerate(labels):
        g.add_node(i, label=name)
    for k, (s, o) in enumerate(_np(rel_index).reshape(2, -1).T):
        g.add_edge(int(s), int(o), relation=rel_labels[k])
    return g


def draw_scene_graph_layout(labels, rel_index, rel_labels, ax=None, seed: int = 0):
    """The scene graph alone, in a networkx spring layout."""
    import networkx as nx

    ax = _axes(ax, (5, 5))
    g = scene_graph_networkx(labels, rel_index, rel_labels)
    layout = nx.spring_layout(nx.DiGraph(g), seed=seed)
    nx.draw_networkx_nodes(g, layout, ax=ax, node_color="#9ecae1", node_size=600)
    nx.draw_networkx_labels(
        g, layout, labels={i: f"{i}:{n}" for i, n in enumerate(labels)}, ax=ax, font_size=7
    )
    simple = nx.DiGraph(g)
    nx.draw_networkx_edges(simple, layout, ax=ax, arrows=True, arrowsize=10, node_size=600)
    edge_labels = {(s, o): d["relation"] for s, o, d in g.edges(data=True)}
    # label_pos 0.3: each label nearer its own subject, so s -> o and o -> s do not overlap
    nx.draw_networkx_edge_labels(
        simple, layout, edge_labels=edge_labels, ax=ax, font_size=6, label_pos=0.3
    )
    ax.margins(0.25)
    ax.set_axis_off()
    return ax


def to_networkx(graph, node_attrs=("pos", "x"), edge_attrs=("edge_attr",)):
    """A region graph (one PyG ``Data``) as an undirected ``networkx.Graph``.

    Nodes carry ``pos`` and ``x`` (as lists) and edges ``edge_attr``, plus, where the graph
    has them, the named features of :data:`graphvision.regions.NODE_FEATURES` and
    :data:`graphvision.regions.EDGE_FEATURES` as scalar attributes.
    """
    import networkx as nx

    from graphvision.regions import EDGE_FEATURES, NODE_FEATURES

    g = nx.Graph()
    n = int(graph.num_nodes)
    for i in range(n):
        attrs = {k: _np(graph[k][i]).tolist() for k in node_attrs if k in graph}
        if "x" in graph and graph.x.size(1) == len(NODE_FEATURES):
            attrs.update({name: float(v) for name, v in zip(NODE_FEATURES, _np(graph.x[i]))})
        g.add_node(i, **attrs)
    ei = _np(graph.edge_index)
    keep = one_per_pair(ei[0], ei[1]) if ei.size else np.zeros(0, dtype=bool)
    for k, (s, o) in enumerate(ei.T):
        if keep[k]:
            attrs = {a: _np(graph[a][k]).tolist() for a in edge_attrs if a in graph}
            if "edge_attr" in graph and graph.edge_attr.size(1) == len(EDGE_FEATURES):
                attrs.update(
                    {name: float(v) for name, v in zip(EDGE_FEATURES, _np(graph.edge_attr[k]))}
                )
            g.add_edge(int(s), int(o), **attrs)
    return g
