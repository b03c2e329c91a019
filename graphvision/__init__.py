"""graphvision: images as graphs of superpixel regions, read by GNNs and transformers."""

__version__ = "0.1.0"
