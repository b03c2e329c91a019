"""Text embeddings of category names, for the zero-shot head (needs the ``lm`` extra)."""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _encode(names: tuple[str, ...], path: str) -> torch.Tensor:
    from graphvision.nn.lm import require_transformers

    tf = require_transformers()
    tokenizer = tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = tf.AutoModel.from_pretrained(path, local_files_only=True).eval()
    batch = tokenizer(list(names), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (C, L, D)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    # mean over the real tokens, as sentence-transformers pools
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)  # (C, D)
    log.info("embedded %d category names with %s", len(names), path)
    return F.normalize(pooled, dim=-1)


def encode_texts(names: list[str], path: str | None = None) -> torch.Tensor:
    """L2-normalised sentence embeddings ``[len(names), D]`` of ``names`` from a local text
    encoder (default: the packaged MiniLM), mean-pooled over tokens."""
    from graphvision.nn.lm import default_lm_path

    return _encode(tuple(names), path or default_lm_path()).clone()
