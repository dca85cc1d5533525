"""An independent, plainly written masked forward of Chroma's double-stream blocks (SPEC.md section 3).

From the inputs each double block received in a real sampling run (forward pre-hooks), it recomputes the
block's joint attention over [prompt; image; concepts] with the method's mask, with explicit math read from the
weights: concept queries see the generated image's keys and the concepts' own, prompt and image queries never
see the concepts (so their rows are the model's own attention, with the model's attention mask where one was
given). The concept stream's modulation is rebuilt from the timestep and guidance alone through Chroma's
approximator, written out here; it shares no code with the pack (the generic pieces come from reference.py).
"""

from __future__ import annotations

import math

import torch

import reference
from reference import attention, gelu_tanh, heads, layer_norm, linear, mlp_embed, rms_norm, rotate, sinusoid


class ChromaBlockInputs(reference.BlockInputs):
    """reference.BlockInputs for Chroma: each double block's img, txt, vec, pe and attention mask."""

    def __init__(self, dm):
        super().__init__(dm, dm.double_blocks, "flux")

    def _on_block(self, i):
        record = super()._on_block(i)

        def hook(module, args, kwargs):
            record(module, args, kwargs)
            mask = kwargs.get("attn_mask")
            self.calls[-1]["blocks"][i]["attn_mask"] = None if mask is None else mask.clone()
        return hook


# ---------- the concept stream's modulation: Chroma's approximator on (timestep, guidance, slot index) ----------
def approximator(dm, t, guidance, slots):
    """Modulation vectors [B, len(slots), D]: each slot's input is [sin(t) (16), sin(guidance) (16),
    sin(slot index) (32)], through in_proj, residual RMS-normed MLP layers, out_proj."""
    net = dm.distilled_guidance_layer
    batch = t.shape[0]
    tg = torch.cat([sinusoid(t, 16, time_factor=1000.0), sinusoid(guidance, 16, time_factor=1000.0)], -1)
    index = sinusoid(torch.tensor(slots, dtype=torch.float32), 32, time_factor=1000.0)
    x = torch.cat([tg[:, None].expand(-1, len(slots), -1), index[None].expand(batch, -1, -1)], -1)
    x = linear(x, net.in_proj)
    for layer, norm in zip(net.layers, net.norms):
        x = x + mlp_embed(rms_norm(x, norm.weight, norm.eps or torch.finfo(torch.float32).eps), layer)
    return linear(x, net.out_proj)


def concept_modulation(dm, t, guidance, block):
    """(shift, scale, gate) of the attention and of the MLP for double block `block`'s text stream. The
    modulation slots are laid out as: 3 per single block, 6 per double block's image stream, then 6 per double
    block's text stream, then the final layer's 2."""
    first = 3 * len(dm.single_blocks) + 6 * len(dm.double_blocks) + 6 * block
    mods = approximator(dm, t.float(), guidance.float(), list(range(first, first + 6)))
    return [mods[:, j:j + 1] for j in range(6)]


# ---------- the masked forward ----------
def text_qkv(x, shift, scale, attn, n_heads):
    h = layer_norm(x) * (1 + scale) + shift
    q, k, v = (heads(t, n_heads) for t in linear(h, attn.qkv).chunk(3, dim=-1))
    qn, kn = attn.norm.query_norm, attn.norm.key_norm
    eps = torch.finfo(torch.float32).eps
    return rms_norm(q, qn.weight, qn.eps or eps), rms_norm(k, kn.weight, kn.eps or eps), v


def masked_attention(q, k, v, bias):
    """attention() with the model's attention mask: an additive bias, or a boolean keep-mask."""
    if bias is None:
        return attention(q, k, v)
    bias = bias.float() if bias.dtype != torch.bool else torch.zeros(bias.shape).masked_fill(~bias, -math.inf)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias[:, None]
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def rope_at(dm, ids):
    """Flux-style rotary matrices [B, 1, L, Dh/2, 2, 2] for position ids [B, L, axes], written out."""
    parts = []
    for axis, dim in enumerate(dm.params.axes_dim):
        omega = 1.0 / dm.params.theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        angle = ids[..., axis, None].double() * omega
        cos, sin = torch.cos(angle), torch.sin(angle)
        parts.append(torch.stack([cos, -sin, sin, cos], -1).reshape(*angle.shape, 2, 2))
    return torch.cat(parts, dim=-3)[:, None].float()


def chroma_reference(dm, call, embeddings, blocks, concept_ids):
    """Saliency per recorded block for one model call, {block: [B, N_gen, C]} over all rows.

    concept_ids: [C, 3] position ids of the concepts (SPEC.md, Positions). Blocks the model skipped
    (`skip_mmdit`: no recorded input) update nothing and give no saliency."""
    n_heads = dm.double_blocks[0].num_heads
    batch = call["t"].shape[0]
    c = linear(embeddings.float()[None].expand(batch, -1, -1), dm.txt_in)
    concept_pe = rope_at(dm, concept_ids[None].expand(batch, -1, -1))
    out = {}
    for i in range(max(blocks) + 1):
        if i not in call["blocks"]:
            continue
        block, inp = dm.double_blocks[i], call["blocks"][i]
        (img_mod, _), (txt_mod, _) = inp["vec"]
        qi, ki, vi = text_qkv(inp["img"].float(), img_mod.shift.float(), img_mod.scale.float(), block.img_attn,
                              n_heads)
        qt, kt, vt = text_qkv(inp["txt"].float(), txt_mod.shift.float(), txt_mod.scale.float(), block.txt_attn,
                              n_heads)
        q, k = rotate(torch.cat([qt, qi], 2), inp["pe"]), rotate(torch.cat([kt, ki], 2), inp["pe"])
        v = torch.cat([vt, vi], 2)
        T, n_gen = inp["txt"].shape[1], inp["img"].shape[1]  # Chroma's image tokens are all generated ones
        o_x = masked_attention(q, k, v, inp["attn_mask"])[:, T:T + n_gen]
        shift1, scale1, gate1, shift2, scale2, gate2 = concept_modulation(dm, call["t"], call["guidance"], i)
        qc, kc, vc = text_qkv(c, shift1, scale1, block.txt_attn, n_heads)
        qc, kc = rotate(qc, concept_pe), rotate(kc, concept_pe)
        o_c = attention(qc, torch.cat([k[:, :, T:T + n_gen], kc], 2), torch.cat([v[:, :, T:T + n_gen], vc], 2))
        if i in blocks:
            out[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)
        c = c + gate1 * linear(o_c, block.txt_attn.proj)
        mlp_in = layer_norm(c) * (1 + scale2) + shift2
        c = c + gate2 * linear(gelu_tanh(linear(mlp_in, block.txt_mlp[0])), block.txt_mlp[2])
    return out


def expected_maps(calls, per_call, blocks, steps=None, patch=2):
    """reference.expected_maps for a model with this patch size (it reads a patch-2 token grid off the latent
    size, so each call is shown the size a patch-2 latent of the same grid has)."""
    def as_patch_2(call):
        h, w = call["x_hw"]
        return {**call, "x_hw": (2 * math.ceil(h / patch), 2 * math.ceil(w / patch))}
    return reference.expected_maps([as_patch_2(call) for call in calls], per_call, blocks, steps)
