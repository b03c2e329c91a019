"""Stage: message passing over the region graph (PyTorch Geometric).

The layer is chosen by name (``model/gnn=gcn|gatv2|gine|gated_gcn|gps|none``; ``none``: no
message passing, the region features go to the sequence stage unchanged); each block is
pre-norm residual, ``h = h + dropout(act(conv(norm(h))))``, and layers that accept edge
features get the encoded ``edge_attr``. ``gps`` uses PyG's ``GPSConv``, which carries its
own residuals and norms (local GINE message passing + global attention). ``gcn``
normalises the graph once per forward (:func:`normalized_adjacency`) and every layer
multiplies by that sparse matrix.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch_geometric.nn import GATv2Conv, GCNConv, GINEConv, GPSConv, ResGatedGraphConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

LAYERS = ("gcn", "gatv2", "gine", "gated_gcn", "gps", "none")


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
    if layer == "gated_gcn":
        return ResGatedGraphConv(channels, channels, edge_dim=edge_dim)
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
        edge_channels: width of the shared edge-feature embedding each layer reads (default 16).

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
        self.edge_encoder = nn.Linear(edge_dim, edge_channels) if self.uses_edges else None
        self.convs = nn.ModuleList(
            make_conv(layer, channels, heads, dropout, edge_channels) for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(
            nn.Identity() if layer == "gps" else nn.LayerNorm(channels) for _ in range(num_layers)
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
        for conv, norm in zip(self.convs, self.norms):
            if self.layer == "gps":
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
