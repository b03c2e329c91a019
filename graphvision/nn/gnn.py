"""Stage: message passing over the region graph (PyTorch Geometric).

The layer is chosen by name (``model/gnn=gcn|gatv2|gine|gated_gcn|gps|none``; ``none``: no
message passing, the region features go to the sequence stage unchanged); each block is
pre-norm residual, ``h = h + dropout(act(conv(norm(h))))``, and layers that accept edge
features get the encoded ``edge_attr``. ``gated_gcn`` is the GatedGCN of the graph
benchmarks (:class:`GatedGCNConv`): its edges carry a state of their own, updated by every
block the same way. ``gps`` uses PyG's ``GPSConv``, which carries its
own residuals and norms (local GINE message passing + global attention). ``gcn``
normalises the graph once per forward (:func:`normalized_adjacency`) and every layer
multiplies by that sparse matrix.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch_geometric.nn import GATv2Conv, GCNConv, GINEConv, GPSConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import scatter, to_torch_csr_tensor

LAYERS = ("gcn", "gatv2", "gine", "gated_gcn", "gps", "none")


def gated_gcn(
    a: torch.Tensor,
    b: torch.Tensor,
    d: torch.Tensor,
    e: torch.Tensor,
    c: torch.Tensor,
    edge_index: torch.Tensor,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GatedGCN's aggregation (Bresson & Laurent's residual gated graph convnets with edge
    gates, as the graph benchmarks use it), from the projections of the nodes and edges.

    For an edge ``j -> i``: ``e_ij = D h_i + E h_j + C e_ij`` (the new edge state) and
    ``h_i = A h_i + sum_j sigmoid(e_ij) * B h_j / (sum_j sigmoid(e_ij) + eps)``: each
    neighbour's message weighted by its gate, the gates normalised over the neighbours.

    Shapes:
        a, b, d, e ``[N, C]`` (``A h`` ... ``E h``), c ``[E, C]`` (``C e``), edge_index
        ``[2, E]`` (source ``j``, target ``i``) -> ``h [N, C]``, ``e_ij [E, C]``.
    """
    src, dst = edge_index
    edge = d.index_select(0, dst) + e.index_select(0, src) + c  # (E, C)
    gate = torch.sigmoid(edge)  # (E, C)
    n = a.size(0)
    num = scatter(gate * b.index_select(0, src), dst, dim=0, dim_size=n, reduce="sum")  # (N, C)
    den = scatter(gate, dst, dim=0, dim_size=n, reduce="sum")  # (N, C)
    return a + num / (den + eps), edge


class GatedGCNConv(nn.Module):
    """GatedGCN (:func:`gated_gcn`): node and edge states of one width, four node
    projections (one matrix) and one edge projection, so the per-edge work is gathers and
    gates, not matrix products.

    Args:
        channels: node and edge width.

    Shapes:
        x ``[N, channels]``, edge_index ``[2, E]``, edge ``[E, channels]`` ->
        ``([N, channels], [E, channels])``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.nodes = nn.Linear(channels, 4 * channels)  # A, B, D, E
        self.edges = nn.Linear(channels, channels)  # C

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge: torch.Tensor):
        a, b, d, e = self.nodes(x).chunk(4, dim=1)  # each (N, C)
        return gated_gcn(a, b, d, e, self.edges(edge), edge_index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels})"


def make_conv(layer: str, channels: int, heads: int, dropout: float, edge_dim: int) -> nn.Module:
    """One message-passing layer ``channels -> channels`` taking ``edge_dim``-wide edge
    features (each layer projects them itself: no edge-level ``channels x channels`` work)."""
    if layer == "gcn":  # takes the normalised adjacency (normalized_adjacency), not edge_index
        return GCNConv(channels, channels, normalize=False)
    if layer == "gatv2":
        # no self loops: the residual block already carries each node's own state
        return GATv2Conv(
            channels,
            channels // heads,
            heads=heads,
            edge_dim=edge_dim,
            dropout=dropout,
            add_self_loops=False,
        )
    if layer == "gine":
        mlp = nn.Sequential(nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, channels))
        return GINEConv(mlp, edge_dim=edge_dim)
    if layer == "gated_gcn":  # its edge state has the nodes' width (RegionGNN encodes it so)
        return GatedGCNConv(channels)
    if layer == "gps":
        mlp = nn.Sequential(nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, channels))
        return GPSConv(
            channels,
            GINEConv(mlp, edge_dim=edge_dim),
            heads=heads,
            dropout=dropout,
            norm="layer_norm",
        )
    raise ValueError(f"unknown GNN layer {layer!r}; choose one of {LAYERS}")


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """GCN's propagation matrix ``D^-1/2 (A + I) D^-1/2`` (PyG's ``gcn_norm``) as a sparse
    CSR tensor whose row ``i`` holds the weights of node ``i``'s incoming edges: one sparse
    product per layer instead of gathering, weighting and scattering every edge.

    Shapes:
        edge_index ``[2, E]`` (source, target) -> ``[N, N]`` sparse CSR.
    """
    index, weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=True)  # (2, E+N), (E+N,)
    with warnings.catch_warnings(), torch.sparse.check_sparse_tensor_invariants(enable=False):
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return to_torch_csr_tensor(index.flip(0), weight, size=(num_nodes, num_nodes))


class RegionGNN(nn.Module):
    """A stack of message-passing blocks over region nodes.

    Args:
        channels: node width in and out.
        edge_dim: width of the raw ``edge_attr`` (default 5).
        layer: one of :data:`LAYERS` (default ``gcn``; ``none``: the identity, no parameters).
        num_layers: blocks (default 2; 0 is the identity; ignored with ``none``).
        heads: attention heads for ``gatv2`` and ``gps`` (default 4).
        dropout: default 0.0.
        edge_channels: width of the shared edge-feature embedding each layer reads (default
            16; ``gated_gcn``: ``channels``, its edge state, updated by each block).

    Shapes:
        x ``[N, channels]``, edge_index ``[2, E]``, edge_attr ``[E, edge_dim]``,
        batch ``[N]`` -> ``[N, channels]``.
    """

    def __init__(
        self,
        channels: int,
        edge_dim: int = 5,
        layer: str = "gcn",
        num_layers: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
        edge_channels: int = 16,
    ) -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"unknown GNN layer {layer!r}; choose one of {LAYERS}")
        num_layers = 0 if layer == "none" else num_layers
        self.layer, self.num_layers, self.channels = layer, num_layers, channels
        self.uses_edges = layer not in ("gcn", "none")
        edge_channels = channels if layer == "gated_gcn" else edge_channels
        self.edge_encoder = nn.Linear(edge_dim, edge_channels) if self.uses_edges else None
        self.convs = nn.ModuleList(
            make_conv(layer, channels, heads, dropout, edge_channels) for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(
            nn.Identity() if layer == "gps" else nn.LayerNorm(channels) for _ in range(num_layers)
        )
        self.edge_norms = nn.ModuleList(
            nn.LayerNorm(channels) for _ in range(num_layers if layer == "gated_gcn" else 0)
        )
        self.act, self.dropout = nn.GELU(), nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        batch: torch.Tensor,
    ) -> torch.Tensor:
        e = self.edge_encoder(edge_attr) if self.edge_encoder is not None else None
        if self.layer == "gcn" and self.num_layers:
            adj = normalized_adjacency(edge_index, x.size(0))  # (N, N) sparse
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if self.layer == "gated_gcn":  # nodes and edges: pre-norm residual blocks both
                h, edge = conv(norm(x), edge_index, self.edge_norms[i](e))
                x = x + self.dropout(self.act(h))
                e = e + self.dropout(self.act(edge))
            elif self.layer == "gps":
                x = conv(x, edge_index, batch, edge_attr=e)
            elif self.layer == "gcn":
                # sparse products have no half-precision kernels: float32 under autocast too
                # (x arrives in half precision from layers that autocast ran)
                with torch.autocast(x.device.type, enabled=False):
                    x = x + self.dropout(self.act(conv(norm(x.float()), adj)))
            else:
                x = x + self.dropout(self.act(conv(norm(x), edge_index, e)))
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.layer}, channels={self.channels}, num_layers={self.num_layers})"
