"""An independent, plainly written re-derivation of ConceptAttention (SPEC.md section 3) on Flux models with
sequential text ids, for the tests: Flux.2 (dev, Klein) and LongCat-Image / Ovis.

From the inputs each double block received in a real sampling run, it runs the block's joint attention ONCE
over [text; image (generated, then reference tokens); concepts] with the concept mask (concept queries see the
generated image's keys and the concepts' own; nothing else sees the concepts), with an explicit softmax,
explicit RoPE for the concepts at their text position, and norms/modulation/MLP read from the weights. The
concept stream enters through `txt_norm` (if any) and `txt_in`, is modulated by the text modulation of the
timestep (+ guidance) embedding, and is updated with the text stream's projection, gates and MLP. Maps: the raw
scores o_x o_c^T averaged over the recorded blocks and steps, then one softmax over concepts at a temperature
(the authors' Flux.2 rule), or the mean of per-block softmaxes (the paper's rule, by softmaxing per call). It
shares no code with the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reference import BlockInputs, gelu_tanh, heads, layer_norm, linear, mlp_embed, rms_norm, rotate, sinusoid


class Flux2BlockInputs(BlockInputs):
    """BlockInputs for the double blocks of a Flux model, also keeping the image modulation ranges (Flux.2's
    reference tokens at a zero timestep under `index_timestep_zero`)."""

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


def mlp(x, block_mlp):
    """The block's MLP as its weights say: SiLU-gated (Flux.2), gate/up/down (Ovis' YakMLP) or GELU (Flux.1)."""
    if hasattr(block_mlp, "gate_proj"):
        return linear(F.silu(linear(x, block_mlp.gate_proj)) * linear(x, block_mlp.up_proj), block_mlp.down_proj)
    hidden = linear(x, block_mlp[0])
    if hidden.shape[-1] == 2 * block_mlp[2].weight.shape[1]:  # SiLU-gated: twice as wide as the output layer reads
        a, b = hidden.chunk(2, dim=-1)
        return linear(F.silu(a) * b, block_mlp[2])
    return linear(gelu_tanh(hidden), block_mlp[2])


def masked_attention(q, k, v, allowed):
    """[B, H, L, Dh] with a boolean [L, L] mask (True: the query row may see the key column) and an explicit
    softmax -> [B, L, H*Dh]."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    out = weights @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def concept_vector(dm, t, guidance):
    """The concepts' modulation input: timestep (+ guidance) embedding, plus a zero pooled vector where the model
    has a pooled input (neither Flux.2, LongCat nor Ovis has one)."""
    vec = mlp_embed(sinusoid(t, time_factor=1000.0), dm.time_in)
    if dm.params.guidance_embed and guidance is not None:
        vec = vec + mlp_embed(sinusoid(guidance, time_factor=1000.0), dm.guidance_in)
    if dm.vector_in is not None:
        vec = vec + mlp_embed(torch.zeros(t.shape[0], dm.params.vec_in_dim), dm.vector_in)
    return vec


def six(vec, lin):
    """(shift, scale, gate, shift2, scale2, gate2) of a modulation layer."""
    return linear(F.silu(vec), lin)[:, None, :].chunk(6, dim=-1)


def masked_forward_scores(dm, call, embeddings, positions, blocks, timestep=None):
    """Raw scores {block: [B, N_gen, C]} of one model call, every row, for a Flux model with sequential text ids:
    Flux.2 (modulations given to the blocks, from `double_stream_modulation_*`) or the Flux.1-style blocks of
    LongCat-Image / Ovis (each block modulates itself). `positions`: each concept's text position (on the text
    id axes); `timestep`: a value replacing the call's timestep in the concept modulation (None: the call's)."""
    n_heads = dm.double_blocks[0].num_heads
    n_gen = math.prod((s + dm.patch_size - 1) // dm.patch_size for s in call["x_hw"])
    batch, n_concepts = call["t"].shape[0], embeddings.shape[0]
    text = embeddings.float()[None].expand(batch, -1, -1)
    if dm.txt_norm is not None:
        text = rms_norm(text, dm.txt_norm.weight, dm.txt_norm.eps or torch.finfo(torch.float32).eps)
    c = linear(text, dm.txt_in)
    t = call["t"] if timestep is None else torch.full_like(call["t"], timestep)
    cvec = concept_vector(dm, t, call["guidance"])
    ids = torch.zeros(batch, n_concepts, len(dm.params.axes_dim))
    for axis in dm.params.txt_ids_dims:
        ids[..., axis] = torch.tensor(positions, dtype=torch.float32)
    concept_pe = rope_matrices(ids, dm.params.axes_dim, dm.params.theta)
    global_modulation = dm.params.global_modulation
    out = {}
    for i in range(max(blocks) + 1):
        block, inp = dm.double_blocks[i], call["blocks"][i]
        img, txt, pe = inp["img"].float(), inp["txt"].float(), inp["pe"]
        if global_modulation:
            (img_m1, _), (txt_m1, _) = inp["vec"]
            img_m, txt_m = (img_m1.shift, img_m1.scale), (txt_m1.shift, txt_m1.scale)
            cm = six(cvec, dm.double_stream_modulation_txt.lin)
        else:
            img_m, txt_m = six(inp["vec"].float(), block.img_mod.lin), six(inp["vec"].float(), block.txt_mod.lin)
            cm = six(cvec, block.txt_mod.lin)
        T, N = txt.shape[1], img.shape[1]
        qt, kt, vt = stream_qkv(modulate(layer_norm(txt), txt_m[0], txt_m[1]), block.txt_attn, n_heads)
        qi, ki, vi = stream_qkv(modulate(layer_norm(img), img_m[0], img_m[1], inp["modulation_dims_img"]),
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
        c = c + cm[5] * mlp(modulate(layer_norm(c), cm[3], cm[4]), block.txt_mlp)
    return out


def schedule_step(call):
    """Index of the call's sigma in the run's schedule, or None off the schedule."""
    hits = torch.isclose(call["sample_sigmas"], call["sigmas"][:1].float(), rtol=1e-4).nonzero()
    return int(hits[0, 0]) if len(hits) else None


def expected_maps(calls, per_call, blocks, steps, temperature=1000.0, patch_size=1):
    """softmax over concepts of (mean of the cond rows' scores over blocks and schedule steps) / temperature,
    as [B, C, h, w]; temperature None keeps the mean. Each step counts once (its first cond call)."""
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
        grid = tuple((s + patch_size - 1) // patch_size for s in call["x_hw"])
    mean = total / count
    maps = mean if temperature is None else torch.softmax(mean / temperature, dim=-1)
    return maps.transpose(1, 2).reshape(maps.shape[0], maps.shape[2], *grid)
