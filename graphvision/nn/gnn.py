"""Stage: message passing over the region graph (PyTorch Geometric).

One class per layer, chosen by its config (``model/gnn=gcn|gatv2|gine|gated_gcn|gps|none``,
each a ``_target_``): :class:`GCN`, :class:`GATv2`, :class:`GINE`, :class:`GatedGCN`,
:class:`GPS` and :class:`NoGNN` (no message passing: the region features go to the
sequence stage unchanged). They share :class:`RegionGNN`'s stack of pre-norm residual
blocks, ``h = h + dropout(act(conv(norm(h))))``, and declare what differs (PyG's
``BasicGNN`` style): the layer (:meth:`RegionGNN.init_conv`), whether it reads the encoded
``edge_attr`` (:attr:`RegionGNN.uses_edges`) and, where the block is not the plain one, the
block itself. ``GatedGCN`` is the GatedGCN of the graph benchmarks (:class:`GatedGCNConv`):
its edges carry a state of their own, updated by every block the same way. ``GPS`` uses
PyG's ``GPSConv``, which carries its own residuals and norms (local GINE message passing +
global attention). ``GCN`` normalises the graph once per forward
(:func:`normalized_adjacency`) and every layer multiplies by that sparse matrix.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch_geometric.nn import GATv2Conv, GCNConv, GINEConv, GPSConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import scatter, to_torch_csr_tensor


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
    """A stack of message-passing blocks over region nodes: the base of every GNN option.
    A subclass gives :meth:`init_conv` and, when its block differs from the pre-norm
    residual one, :meth:`block`.

    Args:
        channels: node width in and out.
        edge_dim: width of the raw ``edge_attr`` (default 5).
        num_layers: blocks (default 2; 0 is the identity).
        heads: attention heads, for the layers that have them (default 4).
        dropout: default 0.0.
        edge_channels: width of the shared edge-feature embedding each layer reads (default
            16; ``GatedGCN``: ``channels``, its edge state, updated by each block).

    Shapes:
        x ``[N, channels]``, edge_index ``[2, E]``, edge_attr ``[E, edge_dim]``,
        batch ``[N]`` -> ``[N, channels]``.
    """

    #: whether the layer reads the encoded ``edge_attr``
    uses_edges: bool = True
    #: whether the layer carries its own norm (the block then has none)
    own_norm: bool = False
    #: whether the edges carry a state of their own, of the nodes' width
    edge_state: bool = False

    def __init__(
        self,
        channels: int,
        edge_dim: int = 5,
        num_layers: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
        edge_channels: int = 16,
    ) -> None:
        super().__init__()
        self.num_layers, self.channels, self.heads = num_layers, channels, heads
        edge_channels = channels if self.edge_state else edge_channels
        self.edge_encoder = nn.Linear(edge_dim, edge_channels) if self.uses_edges else None
        self.convs = nn.ModuleList(
            self.init_conv(channels, heads, dropout, edge_channels) for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(
            nn.Identity() if self.own_norm else nn.LayerNorm(channels) for _ in range(num_layers)
        )
        self.edge_norms = nn.ModuleList(
            nn.LayerNorm(channels) for _ in range(num_layers if self.edge_state else 0)
        )
        self.act, self.dropout = nn.GELU(), nn.Dropout(dropout)

    def init_conv(self, channels: int, heads: int, dropout: float, edge_dim: int) -> nn.Module:
        """One message-passing layer ``channels -> channels`` taking ``edge_dim``-wide edge
        features (each layer projects them itself: no edge-level ``channels x channels``
        work)."""
        raise NotImplementedError

    def graph(self, x: torch.Tensor, edge_index: torch.Tensor):
        """What every block reads of the graph (default: ``edge_index``)."""
        return edge_index

    def block(self, i: int, x, graph, e, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Block ``i``: ``x + dropout(act(conv(norm(x), graph, e)))``; returns the nodes and
        the edge features the next block reads."""
        conv, norm = self.convs[i], self.norms[i]
        return x + self.dropout(self.act(conv(norm(x), graph, e))), e

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        batch: torch.Tensor,
    ) -> torch.Tensor:
        e = self.edge_encoder(edge_attr) if self.edge_encoder is not None else None
        graph = self.graph(x, edge_index) if self.num_layers else edge_index
        for i in range(self.num_layers):
            x, e = self.block(i, x, graph, e, batch)
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}(channels={self.channels}, num_layers={self.num_layers})"


class GCN(RegionGNN):
    """Kipf & Welling's GCN over the normalised adjacency, once per forward
    (:func:`normalized_adjacency`); no edge features."""

    uses_edges = False

    def init_conv(self, channels, heads, dropout, edge_dim):
        return GCNConv(channels, channels, normalize=False)

    def graph(self, x, edge_index):
        return normalized_adjacency(edge_index, x.size(0))  # (N, N) sparse

    def block(self, i, x, adj, e, batch):
        # sparse products have no half-precision kernels: float32 under autocast too (x
        # arrives in half precision from layers that autocast ran)
        conv, norm = self.convs[i], self.norms[i]
        with torch.autocast(x.device.type, enabled=False):
            return x + self.dropout(self.act(conv(norm(x.float()), adj))), e


class GATv2(RegionGNN):
    """GATv2 attention over the neighbours, ``heads`` heads of ``channels // heads``, with
    the edge features; no self loops (the residual carries each node's own state)."""

    def init_conv(self, channels, heads, dropout, edge_dim):
        return GATv2Conv(
            channels,
            channels // heads,
            heads=heads,
            edge_dim=edge_dim,
            dropout=dropout,
            add_self_loops=False,
        )


class GINE(RegionGNN):
    """GIN with edge features (GINE): a two-layer MLP over the sum of the neighbours'
    messages."""

    def init_conv(self, channels, heads, dropout, edge_dim):
        mlp = nn.Sequential(nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, channels))
        return GINEConv(mlp, edge_dim=edge_dim)


class GatedGCN(RegionGNN):
    """GatedGCN (:class:`GatedGCNConv`): node and edge states, both updated by pre-norm
    residual blocks."""

    edge_state = True

    def init_conv(self, channels, heads, dropout, edge_dim):
        return GatedGCNConv(channels)

    def block(self, i, x, edge_index, e, batch):
        h, edge = self.convs[i](self.norms[i](x), edge_index, self.edge_norms[i](e))
        return x + self.dropout(self.act(h)), e + self.dropout(self.act(edge))


class GPS(RegionGNN):
    """GraphGPS (PyG's ``GPSConv``): local GINE message passing plus global attention over
    each image's regions, with its own residuals and norms."""

    own_norm = True

    def init_conv(self, channels, heads, dropout, edge_dim):
        mlp = nn.Sequential(nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, channels))
        return GPSConv(
            channels,
            GINEConv(mlp, edge_dim=edge_dim),
            heads=heads,
            dropout=dropout,
            norm="layer_norm",
        )

    def block(self, i, x, edge_index, e, batch):
        return self.convs[i](x, edge_index, batch, edge_attr=e), e


class NoGNN(RegionGNN):
    """No message passing (``model/gnn=none``): the identity, no parameters; the ablation
    that tells what the graph adds."""

    uses_edges = False

    def __init__(self, channels: int, edge_dim: int = 5, **unused) -> None:
        super().__init__(channels, edge_dim, num_layers=0)
