"""The network's stages, in pipeline order: region features from a CNN (:mod:`.features`),
the GNN over the region graph (:mod:`.gnn`), the transformer over region tokens
(:mod:`.sequence`, pretrained language models in :mod:`.lm`), the task heads
(:mod:`.heads`) and the grouping of regions into objects (:mod:`.grouping`); assembled as
one ``nn.Module`` by :class:`~graphvision.nn.net.GraphVisionNet` (the backbone alone:
:class:`~graphvision.nn.baseline.BackboneNet`)."""
