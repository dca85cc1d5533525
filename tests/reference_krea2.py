"""An independent, plainly written re-derivation of ConceptAttention on Krea 2 (SPEC.md section 3): a MASKED
FORWARD of the single-stream blocks over [text; image; concepts].

From the inputs each block received in a real sampling run (recorded with forward pre-hooks), every block is
recomputed on the sequence [prompt tokens; image tokens; concept tokens] with explicit math read from the
weights (RMS norms, modulation, q/k/v, QK-norm, RoPE from the positions, grouped-query heads, an explicit
masked softmax, sigmoid gate, output projection, SwiGLU MLP), under the concept mask:
- prompt and image queries see the prompt and image keys only (never a concept);
- concept queries see the image keys and the concept keys (never the prompt's).
The concept rows enter through the text path alone (text fusion and text MLP, one concept at a time) with the
timestep's modulation; they are carried from block to block by this recomputation. Saliency at a block is the
softmax over concepts of (image rows) x (concept rows)^T of the attention output before the sigmoid gate.
Shares no code with the pack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference import gelu_tanh, linear, sinusoid


class Krea2BlockInputs:
    """Forward pre-hooks recording each model call (timestep, options, prompt length) and each block's inputs,
    in the form `reference.expected_maps` reads."""

    def __init__(self, dm):
        self.calls = []
        self.handles = [dm.register_forward_pre_hook(self._on_model, with_kwargs=True)]
        for i, block in enumerate(dm.blocks):
            self.handles.append(block.register_forward_pre_hook(self._on_block(i)))

    def _on_model(self, module, args, kwargs):
        options = kwargs.get("transformer_options", {})
        self.calls.append({"t": args[1].clone(), "x_hw": args[0].shape[-2:], "text_tokens": kwargs["context"].shape[1],
                           "cond_or_uncond": list(options.get("cond_or_uncond", [0])),
                           "sigmas": options.get("sigmas"), "sample_sigmas": options.get("sample_sigmas"),
                           "blocks": {}})

    def _on_block(self, i):
        def hook(module, args):
            self.calls[-1]["blocks"][i] = {"x": args[0].clone(), "vec": args[1].clone(), "freqs": args[2].clone()}
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


# ---------- plain pieces of Krea 2 ----------
def rms(x, norm):
    """Krea 2's RMSNorm: the stored scale is zero-centred (weight = 1 + scale)."""
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + norm.eps) * (1 + norm.scale.float())


def swiglu(x, mlp):
    return linear(F.silu(linear(x, mlp.gate)) * linear(x, mlp.up), mlp.down)


def split_heads(x, n):
    """[B, L, n*Dh] -> [B, n, L, Dh]"""
    return x.reshape(x.shape[0], x.shape[1], n, -1).transpose(1, 2)


def rotation_tables(positions, axes, theta):
    """cos, sin [L, Dh/2] of the rotary angles: each axis a gets axes[a]/2 consecutive pairs, frequency
    theta^(-2j/axes[a]) for pair j, angle = position along that axis x frequency."""
    angles = []
    for a, dim in enumerate(axes):
        freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        angles.append(positions[:, a:a + 1].double() * freq[None])
    angles = torch.cat(angles, dim=1).float()
    return torch.cos(angles), torch.sin(angles)


def rotate_pairs(x, cos, sin):
    """Rotate consecutive pairs (x[2j], x[2j+1]) of x [B, H, L, Dh] by the angles of cos/sin [L, Dh/2]."""
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack((cos * even - sin * odd, sin * even + cos * odd), dim=-1)
    return out.reshape(x.shape)


def masked_attention(q, k, v, allowed):
    """[B, H, L, Dh] with an explicit softmax over the keys each query may see (allowed [L, L])."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    out = weights @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def gated_attention(attn, h, cos=None, sin=None, allowed=None):
    """Krea 2's attention on normed input h: returns (attention output before the gate, block output)."""
    q, k, v = (split_heads(linear(h, layer), n) for layer, n in
               ((attn.wq, attn.heads), (attn.wk, attn.kvheads), (attn.wv, attn.kvheads)))
    q, k = rms(q, attn.qknorm.qnorm), rms(k, attn.qknorm.knorm)
    if cos is not None:
        q, k = rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)
    group = attn.heads // attn.kvheads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    if allowed is None:
        allowed = torch.ones(q.shape[2], q.shape[2], dtype=torch.bool)
    o = masked_attention(q, k, v, allowed)
    return o, linear(o * torch.sigmoid(linear(h, attn.gate)), attn.wo)


def text_path(dm, embeddings):
    """Concept tokens [C, features]: each concept a one-token prompt through the text fusion and text MLP."""
    fusion = dm.txtfusion
    x = embeddings.float().reshape(-1, dm.txtlayers, dm.txtdim)      # [C, encoder layers, txtdim]
    for block in fusion.layerwise_blocks:                           # attention across the encoder layers
        x = x + gated_attention(block.attn, rms(x, block.prenorm))[1]
        x = x + swiglu(rms(x, block.postnorm), block.mlp)
    x = (x.transpose(1, 2) @ fusion.projector.weight.float().t())[:, None, :, 0]  # mix of the layers: [C, 1, d]
    for block in fusion.refiner_blocks:                             # attention across the (one-token) prompt
        x = x + gated_attention(block.attn, rms(x, block.prenorm))[1]
        x = x + swiglu(rms(x, block.postnorm), block.mlp)
    norm, first, _, second = dm.txtmlp
    return linear(gelu_tanh(linear(rms(x, norm), first)), second)[:, 0]


def time_vector(dm, t):
    """[B, 1, 6*features]: the blocks' modulation input, from the timestep alone."""
    emb = linear(gelu_tanh(linear(sinusoid(t, dm.tdim, time_factor=1000.0), dm.tmlp[0])), dm.tmlp[2])
    return linear(gelu_tanh(emb), dm.tproj[1])[:, None]


def block_forward(block, seq, vec, cos, sin, allowed):
    """One single-stream block on seq [B, L, F] with per-row modulation vec [B, L, 6F]: (o before the gate,
    the block's output)."""
    prescale, preshift, pregate, postscale, postshift, postgate = (vec + block.mod.lin.float()).chunk(6, dim=-1)
    o, attn_out = gated_attention(block.attn, (1 + prescale) * rms(seq, block.prenorm) + preshift, cos, sin, allowed)
    seq = seq + pregate * attn_out
    return o, seq + postgate * swiglu((1 + postscale) * rms(seq, block.postnorm) + postshift, block.mlp)


def masked_forward(dm, call, embeddings, last_block, concept_position=(0, 0, 0)):
    """Blocks 0..last_block of one model call on [text; image; concepts]: a list of (o, output) per block,
    o [B, L, HD] before the gate, output [B, L, F]; rows text (T), image (N), concepts (C)."""
    batch, T = call["t"].shape[0], call["text_tokens"]
    h, w = ((call["x_hw"][0] + 1) // 2, (call["x_hw"][1] + 1) // 2)
    N, C = h * w, embeddings.shape[0]
    image_ids = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), dim=-1).reshape(N, 2)
    positions = torch.cat([torch.zeros(T, 3),                                          # text at (0, 0, 0)
                           torch.cat([torch.zeros(N, 1), image_ids.float()], dim=1),   # image at (0, row, col)
                           torch.tensor(concept_position, dtype=torch.float32).expand(C, 3)])
    cos, sin = rotation_tables(positions, dm.pe_embedder.axes_dim, dm.pe_embedder.theta)
    is_concept = torch.arange(T + N + C) >= T + N
    is_text = torch.arange(T + N + C) < T
    # prompt/image queries: every key but the concepts'; concept queries: every key but the prompt's
    allowed = torch.where(is_concept[:, None], ~is_text[None, :], ~is_concept[None, :])
    c = text_path(dm, embeddings)[None].expand(batch, C, -1)
    cvec = time_vector(dm, call["t"])
    results = []
    for i in range(last_block + 1):
        recorded = call["blocks"][i]
        seq = torch.cat([recorded["x"].float(), c], dim=1)
        vec = torch.cat([recorded["vec"].float().expand(-1, T + N, -1), cvec.expand(-1, C, -1)], dim=1)
        o, out = block_forward(dm.blocks[i], seq, vec, cos, sin, allowed)
        results.append((o, out))
        c = out[:, T + N:]
    return results


def krea2_reference(dm, call, embeddings, blocks, concept_position=(0, 0, 0)):
    """Saliency per recorded block for one model call: {block: [B, N, C]} over all rows."""
    T, C = call["text_tokens"], embeddings.shape[0]
    out = {}
    for i, (o, _) in enumerate(masked_forward(dm, call, embeddings, max(blocks), concept_position)):
        if i in blocks:
            o_x, o_c = o[:, T:o.shape[1] - C], o[:, o.shape[1] - C:]
            out[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)
    return out
