"""An independent, plainly written masked forward of AuraFlow's double blocks (SPEC.md section 3).

From the inputs each double block received in a real sampling run (forward pre-hooks), it recomputes the
block's joint attention over [registers + prompt; image; concepts] with the method's mask, with explicit math
read from the weights: concept queries see the generated image's keys and the concepts' own; register, prompt
and image queries never see the concepts. The concept stream's modulation is rebuilt from the timestep alone.
It shares no code with the pack (the generic pieces come from reference.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import reference
from reference import attention, heads, layer_norm, linear

EPS = 1e-5  # AuraFlow's LayerNorms are torch's defaults


class AuraBlockInputs(reference.BlockInputs):
    """reference.BlockInputs for AuraFlow: each double block is called as block(txt, img, vec, ...)."""

    def __init__(self, dm):
        super().__init__(dm, dm.double_layers, "aura")

    def _on_block(self, i):
        def hook(module, args, kwargs):
            self.calls[-1]["blocks"][i] = {"txt": args[0].clone(), "img": args[1].clone(), "vec": args[2].clone()}
        return hook


def timestep_vec(dm, t):
    """t_embedder: sinusoid of 1000 t (256 wide: cos then sin), Linear, SiLU, Linear."""
    half = 128
    freqs = 1000 * torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
    return linear(F.silu(linear(emb, dm.t_embedder.mlp[0])), dm.t_embedder.mlp[2])


def modulation(vec, mod):
    """shift/scale/gate of the attention, then of the MLP: [B, 1, D] each."""
    return [m[:, None] for m in linear(F.silu(vec.float()), mod[1]).chunk(6, dim=-1)]


def stream_qkv(x, shift, scale, wq, wk, wv, n_heads):
    h = layer_norm(x, EPS) * (1 + scale) + shift
    q, k, v = heads(linear(h, wq), n_heads), heads(linear(h, wk), n_heads), heads(linear(h, wv), n_heads)
    return layer_norm(q, EPS), layer_norm(k, EPS), v  # per-head LayerNorm without weights


def mlp(x, m):
    return linear(F.silu(linear(x, m.c_fc1)) * linear(x, m.c_fc2), m.c_proj)


def aura_reference(dm, call, embeddings, blocks):
    """Saliency per recorded block for one model call, {block: [B, N_gen, C]} over all rows."""
    batch = call["t"].shape[0]
    c = linear(embeddings.float()[None].expand(batch, -1, -1), dm.cond_seq_linear)
    cvec = timestep_vec(dm, call["t"])
    out = {}
    for i in range(max(blocks) + 1):
        block, inp = dm.double_layers[i], call["blocks"][i]
        attn, n_heads = block.attn, block.attn.n_heads
        txt, img = inp["txt"].float(), inp["img"].float()
        tm, xm = modulation(inp["vec"], block.modC), modulation(inp["vec"], block.modX)
        qt, kt, vt = stream_qkv(txt, tm[0], tm[1], attn.w1q, attn.w1k, attn.w1v, n_heads)
        qi, ki, vi = stream_qkv(img, xm[0], xm[1], attn.w2q, attn.w2k, attn.w2v, n_heads)
        T = txt.shape[1]  # the 8 registers and the (padded) prompt
        o_x = attention(torch.cat([qt, qi], 2), torch.cat([kt, ki], 2), torch.cat([vt, vi], 2))[:, T:]
        cm = modulation(cvec, block.modC)
        qc, kc, vc = stream_qkv(c, cm[0], cm[1], attn.w1q, attn.w1k, attn.w1v, n_heads)
        o_c = attention(qc, torch.cat([ki, kc], 2), torch.cat([vi, vc], 2))
        if i in blocks:
            out[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)
        mid = layer_norm(c + cm[2] * linear(o_c, attn.w1o), EPS)
        c = c + cm[5] * mlp(mid * (1 + cm[4]) + cm[3], block.mlpC)
    return out
