"""An independent, plainly written re-derivation of ConceptAttention on Mochi (SPEC.md section 3): a MASKED FORWARD
of each asymmetric joint block over [video; text without padding; concepts], in the model's own order.

From the inputs each block received in a real sampling run (recorded with forward pre-hooks), it recomputes the
block with the concepts appended to its joint sequence and an explicit mask: concept queries see the video's
keys and the concepts' keys only; video and text queries never see concept keys. Modulation, the RMS norms,
the QK RMS norms, the video rows' interleaved RoPE, the softmax, the tanh-gated sandwich norms and the SwiGLU
MLPs are written out from the weights. The concept stream enters through `t5_yproj`, its modulation is the
timestep embedding plus the attention pooling of an all-zero T5 sequence, both computed here. It shares no code
with the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import reference
from reference import linear, sinusoid


class BlockInputs:
    """Forward pre-hooks recording each model call's inputs and each block's inputs."""

    def __init__(self, dm):
        self.calls = []
        self.handles = [dm.register_forward_pre_hook(self._on_model, with_kwargs=True)]
        for i, block in enumerate(dm.blocks):
            self.handles.append(block.register_forward_pre_hook(self._on_block(i), with_kwargs=True))

    def _on_model(self, module, args, kwargs):
        options = kwargs.get("transformer_options", {})
        self.calls.append({"t": args[1].clone(), "x_shape": tuple(args[0].shape), "context": kwargs["context"],
                           "attention_mask": kwargs["attention_mask"], "num_tokens": kwargs["num_tokens"],
                           "cond_or_uncond": list(options.get("cond_or_uncond", [0])),
                           "sigmas": options.get("sigmas"), "sample_sigmas": options.get("sample_sigmas"),
                           "blocks": {}})

    def _on_block(self, i):
        def hook(module, args, kwargs):
            x, c, y = args
            self.calls[-1]["blocks"][i] = {"x": x, "c": c, "y": y, "rope_cos": kwargs["rope_cos"],
                                           "rope_sin": kwargs["rope_sin"], "crop_y": kwargs["crop_y"]}
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def grid(dm, x_shape):
    return (x_shape[2], x_shape[3] // dm.patch_size, x_shape[4] // dm.patch_size)


# ---------- plain pieces ----------
def rms(x, eps=1e-6, weight=None):
    x = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + eps)
    return x if weight is None else x * weight.float()


def rope(x, cos, sin):
    """Interleaved RoPE with per-head angles: x [B, L, H, Dh], cos/sin [L, H, Dh/2]."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


def swiglu(ff, x):
    a, gate = linear(x, ff.w1).chunk(2, dim=-1)
    return linear(F.silu(a) * gate, ff.w2)


def gated(x, residual, gate):
    """x + tanh(gate) * rms(residual): Mochi's residual sandwich norm."""
    return x + torch.tanh(gate)[:, None] * rms(residual)


def split_qkv(t, n_heads):
    """[B, L, 3 * H * Dh] -> q, k, v [B, L, H, Dh] (the model's view(B, L, 3, H, Dh))."""
    return t.reshape(t.shape[0], t.shape[1], 3, n_heads, -1).unbind(2)


# ---------- the concept stream's modulation ----------
def attention_pool(pool, x, mask):
    """ComfyUI's AttentionPool written out: the masked mean of the tokens queries [mean; tokens]."""
    m = mask.float()[:, :, None]
    mean = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
    seq = torch.cat([mean, x], dim=1)
    n, d = pool.num_heads, x.shape[-1]
    k, v = linear(seq, pool.to_kv).split(d, dim=-1)
    q = linear(mean, pool.to_q)
    shape = lambda t: t.reshape(t.shape[0], t.shape[1], n, -1).transpose(1, 2)  # noqa: E731
    q, k, v = shape(q), shape(k), shape(v)
    visible = torch.cat([torch.ones(x.shape[0], 1), m[:, :, 0]], dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + torch.where(visible > 0, 0.0, -math.inf)[:, None, None]
    out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(x.shape[0], -1)
    return linear(out, pool.to_out)


def concept_vec(dm, call, pooled="zero"):
    """c for the concepts [B, D]: timestep embedding of 1 - sigma, plus the pooled text term: "zero" (the pool of
    an all-zero sequence: every key and value is the bias, so it is to_out(v bias)), "prompt" (the prompt's own
    pooling, for the test that the rule matters) or "none"."""
    t = 1 - call["t"].float()
    vec = linear(F.silu(linear(sinusoid(t, dim=256, time_factor=1000.0), dm.t_embedder.mlp[0])), dm.t_embedder.mlp[2])
    pool = dm.t5_y_embedder
    if pooled == "zero":
        v_bias = pool.to_kv.bias.float()[pool.to_kv.bias.shape[0] // 2:]
        vec = vec + linear(v_bias, pool.to_out)
    elif pooled == "prompt":
        vec = vec + attention_pool(pool, call["context"].float(), call["attention_mask"])
    return vec


# ---------- one block ----------
@torch.no_grad()
def masked_forward(dm, call, embeddings, blocks, *, pooled="zero", concept_rope=None):
    """The masked forward of one model call up to the last of `blocks`. Returns ({block: saliency [B, N, C]},
    {block: (video output, text output)}) over all rows.

    concept_rope=j rotates the concepts as video token j (the test that concepts have no position)."""
    batch = call["t"].shape[0]
    c = linear(embeddings.float()[None].expand(batch, -1, -1), dm.t5_yproj)
    cvec = concept_vec(dm, call, pooled)
    saliency, outputs = {}, {}
    for i in range(max(blocks) + 1):
        block, inp = dm.blocks[i], call["blocks"][i]
        attn, n_heads = block.attn, block.attn.num_heads
        x, y, vec = inp["x"].float(), inp["y"].float(), inp["c"].float()
        N, crop, C = x.shape[1], min(inp["crop_y"], y.shape[1]), c.shape[1]
        mx = linear(F.silu(vec), block.mod_x).chunk(4, dim=-1)
        my = linear(F.silu(vec), block.mod_y)
        mc = linear(F.silu(cvec), block.mod_y)
        my, mc = (m.chunk(4, dim=-1) if block.update_y else (m,) for m in (my, mc))
        qx, kx, vx = split_qkv(linear(rms(x) * (1 + mx[0][:, None]), attn.qkv_x), n_heads)
        qx, kx = rms(qx, 1e-5, attn.q_norm_x.weight), rms(kx, 1e-5, attn.k_norm_x.weight)
        cos, sin = inp["rope_cos"].float(), inp["rope_sin"].float()
        qx, kx = rope(qx, cos, sin), rope(kx, cos, sin)
        qy, ky, vy = split_qkv(linear(rms(y) * (1 + my[0][:, None]), attn.qkv_y), n_heads)
        qc, kc, vc = split_qkv(linear(rms(c) * (1 + mc[0][:, None]), attn.qkv_y), n_heads)
        qy, ky = rms(qy, 1e-5, attn.q_norm_y.weight), rms(ky, 1e-5, attn.k_norm_y.weight)
        qc, kc = rms(qc, 1e-5, attn.q_norm_y.weight), rms(kc, 1e-5, attn.k_norm_y.weight)
        if concept_rope is not None:
            qc, kc = rope(qc, cos[concept_rope], sin[concept_rope]), rope(kc, cos[concept_rope], sin[concept_rope])
        # [video; prompt tokens (no padding); concepts], the model's order with the concepts after it
        q, k, v = (torch.cat([a, b[:, :crop], d], dim=1).transpose(1, 2)
                   for a, b, d in ((qx, qy, qc), (kx, ky, kc), (vx, vy, vc)))
        L = N + crop
        mask = torch.zeros(L + C, L + C)
        mask[:L, L:] = -math.inf     # video and text never see the concepts
        mask[L:, N:L] = -math.inf    # concepts see the video and themselves, not the prompt
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask, dim=-1)
        joint = (weights @ v).transpose(1, 2).reshape(batch, L + C, -1)
        o_x, o_y, o_c = joint[:, :N], joint[:, N:L], joint[:, L:]
        if i in blocks:
            saliency[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)
        # the block's own outputs (for the check that this is the model's forward), then the concept update
        x = gated(x, linear(o_x, attn.proj_x), mx[1])
        x = gated(x, swiglu(block.mlp_x, rms(x) * (1 + mx[2][:, None])), mx[3])
        if block.update_y:
            o_y = torch.cat([o_y, torch.zeros(batch, y.shape[1] - crop, o_y.shape[-1])], dim=1)  # padding rows: 0
            y = gated(y, linear(o_y, attn.proj_y), my[1])
            y = gated(y, swiglu(block.mlp_y, rms(y) * (1 + my[2][:, None])), my[3])
            c = gated(c, linear(o_c, attn.proj_y), mc[1])
            c = gated(c, swiglu(block.mlp_y, rms(c) * (1 + mc[2][:, None])), mc[3])
        outputs[i] = (x, y)
    return saliency, outputs


def expected_maps(dm, calls, embeddings, blocks, **options):
    """Mean over recorded blocks and schedule steps (each once, cond rows only) as [B, C, frames, h, w]."""
    return reference.expected_maps(calls, lambda call: masked_forward(dm, call, embeddings, blocks, **options)[0],
                                   blocks, grid=grid(dm, calls[0]["x_shape"]))
