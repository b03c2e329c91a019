"""Language-model sequence stages: DeepSeek-V3 (bidirectional, balance loss) and a frozen
pretrained LM (the packaged MiniLM, offline)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers", reason="the lm extra (transformers) is not installed")

from graphvision.nn.lm import DeepseekV3Sequence, PretrainedLMSequence, balance_loss  # noqa: E402
from graphvision.nn.sequence import raster_order  # noqa: E402
from tests.conftest import build_module  # noqa: E402

SMALL = {
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "q_lora_rank": 32,
    "kv_lora_rank": 16,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 16,
    "v_head_dim": 16,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "n_shared_experts": 1,
    "moe_intermediate_size": 64,
    "intermediate_size": 128,
    "first_k_dense_replace": 1,
}


def _inputs():
    torch.manual_seed(0)
    return torch.randn(7, 32), torch.rand(7, 2), torch.tensor([0, 0, 0, 0, 1, 1, 1])


def test_deepseek_v3_is_bidirectional():
    """Changing the last region of a sequence changes the first region's output (a causal
    model could not), and leaves the other image's outputs alone."""
    torch.manual_seed(0)
    seq = DeepseekV3Sequence(32, SMALL).eval()
    h, pos, batch = _inputs()
    order = raster_order(pos, batch)
    first, last = int(order[0]), int(order[3])  # graph 0's first and last tokens
    with torch.no_grad():
        tokens = seq(h, pos, batch).tokens
        changed = h.clone()
        changed[last] += 1.0
        tokens2 = seq(changed, pos, batch).tokens
    assert not torch.allclose(tokens[first], tokens2[first], atol=1e-6)
    torch.testing.assert_close(tokens[4:], tokens2[4:])  # padding keeps images apart


def test_deepseek_v3_attention_matches_and_sums_to_one():
    seq = DeepseekV3Sequence(32, SMALL).eval()
    h, pos, batch = _inputs()
    with torch.no_grad():
        cls, tokens, _ = seq(h, pos, batch)
        cls2, tokens2, attention = seq(h, pos, batch, return_attention=True)
    torch.testing.assert_close(cls, cls2, atol=1e-5, rtol=1e-5)
    assert attention.shape == (2, 7)
    totals = torch.zeros(2, 2).index_add_(1, batch, attention)
    assert (totals <= 1 + 1e-5).all() and (attention >= 0).all()


def test_balance_loss_exact():
    """Two experts, top-1, two tokens each routed to a different expert: f = [1, 1]; P is
    the mean normalised affinity; padding tokens are left out."""
    logits = torch.tensor([[2.0, -2.0], [-2.0, 2.0], [9.0, -9.0]])
    valid = torch.tensor([[True, True, False]])
    loss, load = balance_loss(logits, valid, top_k=1)
    s = torch.sigmoid(logits[:2])
    p = (s / s.sum(1, keepdim=True)).mean(0)
    assert load.tolist() == [0.5, 0.5]
    assert loss.item() == pytest.approx(float((torch.tensor([1.0, 1.0]) * p).sum()))
    skewed, load = balance_loss(
        torch.tensor([[2.0, -2.0], [3.0, -1.0]]), torch.tensor([[True, True]]), top_k=1
    )
    assert load.tolist() == [1.0, 0.0] and skewed.item() > loss.item()


def test_deepseek_v3_declares_balance_loss_and_expert_usage(degenerate_batch):
    """The stage declares its balance loss (weighted by model.sequence.balance_weight in the
    training loss) and each expert's load through its interface; the module adds them."""
    batch, info = degenerate_batch
    module = build_module(info, ["model/sequence=deepseek_v3", "model.dim=32"])
    module.net.sequence = DeepseekV3Sequence(32, SMALL, balance_weight=0.25)
    losses = module.losses(module(batch), batch)
    balance = module.net.sequence.extra_losses()["balance"]
    assert losses["balance"] is balance and balance >= 1.0 - 1e-5
    assert module.loss_weights["balance"] == 0.25
    total = module.weighted_loss(losses)
    expected = sum(v for k, v in losses.items() if k != "balance") + 0.25 * balance
    torch.testing.assert_close(total, expected)
    stats = module.net.sequence.statistics()
    load = torch.stack([stats[f"expert_{i}_load"] for i in range(4)])
    assert load.sum().item() == pytest.approx(1.0)
    assert stats["expert_load_max"].item() == pytest.approx(load.max().item() * 4)


def test_every_sequence_stage_returns_the_same_structure():
    """cls [B, d], tokens [N, d] and attention [layers, N] or None, whatever the stage."""
    from graphvision.nn.sequence import NoSequence, SequenceOutput, TransformerSequence

    h, pos, batch = _inputs()
    for stage in (
        TransformerSequence(32, depth=1),
        NoSequence(32),
        DeepseekV3Sequence(32, SMALL),
        PretrainedLMSequence(32, last_k=1),
    ):
        stage.eval()
        with torch.no_grad():
            plain, attended = stage(h, pos, batch), stage(h, pos, batch, return_attention=True)
        assert isinstance(plain, SequenceOutput) and isinstance(attended, SequenceOutput)
        assert plain.cls.shape == (2, 32) and plain.tokens.shape == (7, 32), stage
        assert plain.attention is None and attended.attention.shape[1] == 7, stage
        torch.testing.assert_close(plain.tokens, attended.tokens, atol=1e-5, rtol=1e-5)
        assert isinstance(stage.extra_losses(), dict) and isinstance(stage.statistics(), dict)


@pytest.mark.parametrize("stage", ["deepseek", "pretrained"])
def test_attention_implementation_is_restored(stage):
    """Asking for attention switches the language model to eager attention for that call
    and restores the implementation it had, whatever it was."""
    seq = DeepseekV3Sequence(32, SMALL) if stage == "deepseek" else PretrainedLMSequence(32)
    model = seq.model if stage == "deepseek" else seq.lm
    h, pos, batch = _inputs()
    for before in ("sdpa", "eager"):
        model.set_attn_implementation(before)
        with torch.no_grad():
            seq(h, pos, batch, return_attention=True)
            seq(h, pos, batch)
        assert model.config._attn_implementation == before


def test_pretrained_lm_offline_frozen_weights_do_not_move(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    torch.manual_seed(0)
    seq = PretrainedLMSequence(32)
    assert type(seq.lm).__name__ == "BertModel"
    frozen = {k: v.clone() for k, v in seq.lm.state_dict().items()}
    adapter = seq.adapter_in.weight.clone()
    opt = torch.optim.AdamW([p for p in seq.parameters() if p.requires_grad], lr=1e-2)
    seq.train()
    h, pos, batch = _inputs()
    cls, tokens, _ = seq(h, pos, batch)
    (cls.pow(2).mean() + tokens.pow(2).mean()).backward()
    opt.step()
    assert all(torch.equal(frozen[k], v) for k, v in seq.lm.state_dict().items())  # bit-identical
    assert not torch.equal(adapter, seq.adapter_in.weight)
    assert not seq.lm.training  # frozen: no dropout


def test_pretrained_lm_last_k_layers():
    seq = PretrainedLMSequence(32, last_k=2)
    assert len(seq.lm.encoder.layer) == 2
    h, pos, batch = _inputs()
    cls, tokens, attention = seq(h, pos, batch, return_attention=True)
    assert cls.shape == (2, 32) and tokens.shape == (7, 32) and attention.shape == (2, 7)


@pytest.mark.slow
def test_zero_shot_unseen_scene_map_beats_chance(tmp_path):
    """Two synthetic categories are never training targets; the zero-shot head still ranks
    images containing them above chance (the AP of a random ranking is their prevalence)."""
    import json

    import numpy as np

    from graphvision.train import train
    from tests.conftest import compose_cfg

    cfg = compose_cfg(
        overrides=[
            "experiment=synthetic_zero_shot",
            "data.num_train=240",
            "data.num_val=80",
            "data.prepare_workers=1",
            "data.batch_size=16",
            "trainer.max_epochs=4",
            "trainer.enable_progress_bar=false",
        ],
        tmp=tmp_path,
    )
    metrics = train(cfg)
    root = next((tmp_path / "data" / "synthetic").iterdir())
    val = json.loads((root / "annotations" / "instances_val.json").read_text())
    names = {c["id"]: c["name"] for c in val["categories"]}
    present = {name: set() for name in ("red square", "blue circle")}
    for ann in val["annotations"]:
        if names[ann["category_id"]] in present:
            present[names[ann["category_id"]]].add(ann["image_id"])
    chance = float(np.mean([len(ids) / len(val["images"]) for ids in present.values()]))
    assert {"val/scene_map_seen", "val/scene_map_unseen", "val/object_acc_unseen"} <= set(metrics)
    assert metrics["val/scene_map_unseen"] > chance + 0.05, (
        metrics["val/scene_map_unseen"],
        chance,
    )
    assert metrics["val/object_acc_unseen"] > 1 / 9


def test_missing_transformers_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install -e "\.\[lm\]"'):
        DeepseekV3Sequence(32, SMALL)
