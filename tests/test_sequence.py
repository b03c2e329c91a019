"""The sequence stage: the encoder layer against PyTorch's, the CLS token's attention."""

from __future__ import annotations

import torch


def _torch_layer(layer, dim: int, heads: int, hidden: int) -> torch.nn.TransformerEncoderLayer:
    """PyTorch's own pre-norm encoder layer carrying the weights of our ``EncoderLayer``."""
    ref = torch.nn.TransformerEncoderLayer(
        dim, heads, hidden, 0.0, activation="gelu", batch_first=True, norm_first=True
    )
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(layer.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(layer.attn.qkv.bias)
        ref.self_attn.out_proj.load_state_dict(layer.attn.proj.state_dict())
        ref.norm1.load_state_dict(layer.norm1.state_dict())
        ref.norm2.load_state_dict(layer.norm2.state_dict())
        ref.linear1.load_state_dict(layer.mlp[0].state_dict())
        ref.linear2.load_state_dict(layer.mlp[3].state_dict())
    return ref


def test_encoder_layer_equals_torch_transformer_layer():
    """Oracle: our SDPA encoder layer computes nn.TransformerEncoderLayer(norm_first=True)
    with the same weights, on padded sequences, forward and backward."""
    from graphvision.nn.sequence import EncoderLayer

    torch.manual_seed(0)
    layer = EncoderLayer(16, heads=4, hidden=32)
    ref = _torch_layer(layer, 16, 4, 32)
    keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 2 + [False] * 4])
    x = torch.randn(3, 6, 16, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = layer(x, keep)
    expected = ref(x_ref, src_key_padding_mask=~keep)
    torch.testing.assert_close(out[keep], expected[keep], rtol=1e-5, atol=1e-5)
    out[keep].square().sum().backward()
    expected[keep].square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        layer.attn.qkv.weight.grad, ref.self_attn.in_proj_weight.grad, rtol=1e-4, atol=1e-5
    )


def test_cls_attention_comes_from_the_encoder_itself():
    """Oracle: the CLS attention the sequence stage returns equals nn.MultiheadAttention's
    weights for the same projections on the same pre-normed sequence; the outputs are those
    of the plain forward; and it is a distribution over CLS + regions."""
    from graphvision.nn.sequence import TransformerSequence, raster_order, sincos_2d, to_sequence

    torch.manual_seed(0)
    seq = TransformerSequence(16, depth=1, heads=2).eval()
    h, pos = torch.randn(7, 16), torch.rand(7, 2)
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    with torch.no_grad():
        cls, tokens, attention = seq(h, pos, batch, return_attention=True)
        cls2, tokens2, none = seq(h, pos, batch)
        assert none is None
        torch.testing.assert_close(cls, cls2)
        torch.testing.assert_close(tokens, tokens2)
        assert attention.shape == (1, 7)
        # independently: PyTorch's attention on layer 0's pre-normed sequence, CLS row
        x = h + seq.pos_proj(sincos_2d(pos, 16))
        dense, mask, _ = to_sequence(x, pos, batch, seq.rows)
        perm = raster_order(pos, batch, seq.rows)
        s = torch.cat([seq.cls.expand(2, -1, -1), dense], 1)
        pad = torch.cat([mask.new_zeros(2, 1), ~mask], 1)
        layer = seq.layers[0]
        mha = _torch_layer(layer, 16, 2, 32).self_attn.eval()
        s = layer.norm1(s)
        _, w = mha(s, s, s, key_padding_mask=pad, need_weights=True, average_attn_weights=True)
    expected = torch.empty(7)
    expected[perm] = w[:, 0, 1:][mask]
    torch.testing.assert_close(attention[0], expected)
    totals = torch.zeros(2).index_add_(0, batch, attention[0])
    assert (totals <= 1 + 1e-6).all() and (attention >= 0).all()
