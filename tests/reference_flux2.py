"""An independent, plainly written re-derivation of ConceptAttention on Flux.2 (SPEC.md section 3), for the tests.

From the inputs each double block received in a real sampling run, it runs the block's joint attention ONCE
over [text; image (generated, then reference tokens); concepts] with the concept mask (concept queries see the
generated image's keys and the concepts' own; nothing else sees the concepts), with an explicit softmax,
explicit RoPE for the concepts, and norms/modulation/MLP read from the weights. The concept stream enters through
`txt_in`, is modulated by the text modulation of the timestep (+ guidance) embedding, and is updated with the text
stream's projection, gates and SiLU-gated MLP. Maps: the raw scores o_x o_c^T averaged over the recorded blocks
and steps, then one softmax over concepts at a temperature (the authors' Flux.2 rule). It shares no code with
the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reference import BlockInputs, heads, layer_norm, linear, mlp_embed, rms_norm, rotate, sinusoid


class Flux2BlockInputs(BlockInputs):
    """BlockInputs for Flux.2 double blocks, also keeping the image modulation ranges (reference tokens at a zero
    timestep under `index_timestep_zero`)."""

    def __init__(self, dm):
        super().__init__(dm, dm.double_blocks, "flux")

    def _on_block(self, i):
        record = super()._on_block(i)

        def hook(module, args, kwargs):
            record(module, args, kwargs)
            self.calls[-1]["blocks"][i]["modulation_dims_img"] = kwargs.get("modulation_dims_img")
        return hook


def rope_matrices(ids: torch.Tensor, axes_dim, theta: float) -> torch.Tensor:
    """[..., L, n_axes] positions -> [..., 1, L, Dh/2, 2, 2] rotations: axis a turns its d_a/2 pairs by
    id_a * theta^(-2j/d_a), pairs of all axes one after another."""
    angles = []
    for axis, dim in enumerate(axes_dim):
        freqs = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        angles.append(ids[..., axis:axis + 1].double() * freqs)
    angle = torch.cat(angles, dim=-1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    return rot.float().unsqueeze(-5)


def modulate(x, shift, scale, ranges=None):
    """x * (1 + scale) + shift; with ranges [(start, stop, j)] row ranges take modulation j."""
    if ranges is None:
        return x * (1 + scale.float()) + shift.float()
    out = torch.empty_like(x)
    for start, stop, j in ranges:
        out[:, start:stop] = x[:, start:stop] * (1 + scale[:, j:j + 1].float()) + shift[:, j:j + 1].float()
    return out


def stream_qkv(x, attn, n_heads):
    q, k, v = linear(x, attn.qkv).chunk(3, dim=-1)
    q, k, v = heads(q, n_heads), heads(k, n_heads), heads(v, n_heads)
    qn, kn = attn.norm.query_norm, attn.norm.key_norm
    q = rms_norm(q, qn.weight, qn.eps or torch.finfo(torch.float32).eps)
    k = rms_norm(k, kn.weight, kn.eps or torch.finfo(torch.float32).eps)
    return q, k, v


def silu_gated_mlp(x, mlp):
    a, b = linear(x, mlp[0]).chunk(2, dim=-1)
    return linear(F.silu(a) * b, mlp[2])


def masked_attention(q, k, v, allowed):
    """[B, H, L, Dh] with a boolean [L, L] mask (True: the query row may see the key column) and an explicit
    softmax -> [B, L, H*Dh]."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    out = weights @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def concept_modulation(dm, t, guidance):
    """The six text-stream modulations (shift, scale, gate, shift2, scale2, gate2) of the timestep (+ guidance)
    embedding: Flux.2 has no pooled text vector."""
    vec = mlp_embed(sinusoid(t, time_factor=1000.0), dm.time_in)
    if dm.params.guidance_embed and guidance is not None:
        vec = vec + mlp_embed(sinusoid(guidance, time_factor=1000.0), dm.guidance_in)
    return linear(F.silu(vec), dm.double_stream_modulation_txt.lin)[:, None, :].chunk(6, dim=-1)


def flux2_reference(dm, call, embeddings, positions, blocks, timestep=None):
    """Raw scores {block: [B, N_gen, C]} of one model call, every row. `positions`: each concept's text position
    (the last id axis); `timestep`: a value replacing the call's timestep in the concept modulation (None: the
    call's own)."""
    n_heads = dm.double_blocks[0].num_heads
    n_gen = call["x_hw"][0] * call["x_hw"][1]
    batch, n_concepts = call["t"].shape[0], embeddings.shape[0]
    c = linear(embeddings.float()[None].expand(batch, -1, -1), dm.txt_in)
    t = call["t"] if timestep is None else torch.full_like(call["t"], timestep)
    cm = concept_modulation(dm, t, call["guidance"])
    ids = torch.zeros(batch, n_concepts, len(dm.params.axes_dim))
    ids[..., -1] = torch.tensor(positions, dtype=torch.float32)
    concept_pe = rope_matrices(ids, dm.params.axes_dim, dm.params.theta)
    out = {}
    for i in range(max(blocks) + 1):
        block, inp = dm.double_blocks[i], call["blocks"][i]
        img, txt, pe = inp["img"].float(), inp["txt"].float(), inp["pe"]
        (img_m1, _), (txt_m1, _) = inp["vec"]
        T, N = txt.shape[1], img.shape[1]
        qt, kt, vt = stream_qkv(modulate(layer_norm(txt), txt_m1.shift, txt_m1.scale), block.txt_attn, n_heads)
        qi, ki, vi = stream_qkv(modulate(layer_norm(img), img_m1.shift, img_m1.scale, inp["modulation_dims_img"]),
                                block.img_attn, n_heads)
        qc, kc, vc = stream_qkv(modulate(layer_norm(c), cm[0], cm[1]), block.txt_attn, n_heads)
        qt, kt = rotate(qt, pe[:, :, :T]), rotate(kt, pe[:, :, :T])
        qi, ki = rotate(qi, pe[:, :, T:]), rotate(ki, pe[:, :, T:])
        qc, kc = rotate(qc, concept_pe), rotate(kc, concept_pe)
        L = T + N + n_concepts
        allowed = torch.ones(L, L, dtype=torch.bool)
        allowed[:T + N, T + N:] = False              # text and image never see the concepts
        allowed[T + N:, :] = False                   # concepts see ...
        allowed[T + N:, T:T + n_gen] = True          # ... the generated image (not the prompt, not references)
        allowed[T + N:, T + N:] = True               # ... and the concepts
        joint = masked_attention(torch.cat([qt, qi, qc], 2), torch.cat([kt, ki, kc], 2),
                                 torch.cat([vt, vi, vc], 2), allowed)
        o_x, o_c = joint[:, T:T + n_gen], joint[:, T + N:]
        if i in blocks:
            out[i] = o_x @ o_c.transpose(1, 2)
        c = c + cm[2] * linear(o_c, block.txt_attn.proj)
        c = c + cm[5] * silu_gated_mlp(modulate(layer_norm(c), cm[3], cm[4]), block.txt_mlp)
    return out


def schedule_step(call):
    """Index of the call's sigma in the run's schedule, or None off the schedule."""
    hits = torch.isclose(call["sample_sigmas"], call["sigmas"][:1].float(), rtol=1e-4).nonzero()
    return int(hits[0, 0]) if len(hits) else None


def expected_maps(calls, per_call, blocks, steps, temperature=1000.0):
    """softmax over concepts of (mean of the cond rows' raw scores over blocks and schedule steps) / temperature,
    as [B, C, h, w]; temperature None keeps the raw mean. Each step counts once (its first cond call)."""
    total, count, seen = None, 0, set()
    for call in calls:
        step = schedule_step(call)
        if step is None or step not in steps or step in seen or 0 not in call["cond_or_uncond"]:
            continue
        seen.add(step)
        kinds = call["cond_or_uncond"]
        per = call["t"].shape[0] // len(kinds)
        scores = per_call(call)
        for j, kind in enumerate(kinds):
            if kind == 0:
                for b in blocks:
                    s = scores[b][j * per:(j + 1) * per]
                    total = s if total is None else total + s
                    count += 1
        grid = tuple(call["x_hw"])
    mean = total / count
    maps = mean if temperature is None else torch.softmax(mean / temperature, dim=-1)
    return maps.transpose(1, 2).reshape(maps.shape[0], maps.shape[2], *grid)
