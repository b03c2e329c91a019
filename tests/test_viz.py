"""``graphvision.viz``: graphs for analysis, exact."""

from __future__ import annotations

import pytest
import torch


def test_to_networkx_exact():
    from torch_geometric.data import Data

    from graphvision.viz import scene_graph_networkx, to_networkx

    x = torch.arange(3 * 13, dtype=torch.float).view(3, 13)
    data = Data(
        x=x,
        pos=torch.tensor([[0.1, 0.2], [0.5, 0.5], [0.9, 0.8]]),
        edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]),
        edge_attr=torch.arange(20.0).view(4, 5),
    )
    g = to_networkx(data)
    assert sorted(g.edges()) == [(0, 1), (1, 2)] and g.number_of_nodes() == 3
    assert g.nodes[2]["pos"] == pytest.approx([0.9, 0.8]) and g.nodes[1]["mean_r"] == 13.0
    assert (
        g.edges[1, 2]["edge_attr"] == [10.0, 11.0, 12.0, 13.0, 14.0]
        and g.edges[1, 2]["colour_diff"] == 14.0
    )
    sg = scene_graph_networkx(["cat", "mat"], torch.tensor([[0, 1], [1, 0]]), ["above", "below"])
    assert sg.nodes[0]["label"] == "cat" and sorted(
        d["relation"] for _, _, d in sg.edges(data=True)
    ) == ["above", "below"]
