"""An independent, plainly written re-derivation of ConceptAttention on the HunyuanVideo family (SPEC.md
section 3): a MASKED FORWARD of each double block over [text; image; concepts].

From the inputs each double block received in a real sampling run (recorded with forward pre-hooks), it
recomputes the block's joint attention with the concepts appended to the sequence and an explicit mask:
concept queries see the generated video's keys and the concepts' keys only; text and image queries never see
concept keys (and keep the model's own text-padding mask). Norms, modulation (per token where the model
modulates the first frame apart), RoPE and softmax are written out from the weights. The concept stream enters
through the TokenRefiner written out here (each concept alone), with the timestep/guidance modulation and a
zero pooled vector computed from the embedders. It shares no code with the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import reference
from reference import attention, flux_qkv, gelu_tanh, heads, layer_norm, linear, mlp_embed, rotate, sinusoid


class BlockInputs:
    """Forward pre-hooks recording each model call's inputs and each double block's keyword arguments."""

    def __init__(self, dm):
        self.calls = []
        self.handles = [dm.register_forward_pre_hook(self._on_model, with_kwargs=True)]
        for i, block in enumerate(dm.double_blocks):
            self.handles.append(block.register_forward_pre_hook(self._on_block(i), with_kwargs=True))

    def _on_model(self, module, args, kwargs):
        options = kwargs.get("transformer_options", {})
        self.calls.append({"t": args[1].clone(), "x_shape": tuple(args[0].shape), "guidance": kwargs.get("guidance"),
                           "y": kwargs.get("y"), "disable_time_r": kwargs.get("disable_time_r", False),
                           "cond_or_uncond": list(options.get("cond_or_uncond", [0])),
                           "sigmas": options.get("sigmas"), "sample_sigmas": options.get("sample_sigmas"),
                           "blocks": {}})

    def _on_block(self, i):
        def hook(module, args, kwargs):
            self.calls[-1]["blocks"][i] = {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()
                                           if k != "transformer_options"}
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def grid(dm, x_shape):
    """Token grid of the generated latent: (frames, h, w) or (h, w), ceil over the patch."""
    return tuple(math.ceil(s / p) for s, p in zip(x_shape[2:], dm.patch_size))


# ---------- the concept stream's entry ----------
def affine_layer_norm(x, norm):
    return layer_norm(x, norm.eps) * norm.weight.float() + norm.bias.float()


def token_refiner(refiner, x, t):
    """ComfyUI's TokenRefiner written out: x [B, L, ctx] text features, t [B] model timesteps."""
    temb = mlp_embed(sinusoid(t, time_factor=1.0), refiner.t_embedder)
    cvec = temb + mlp_embed(x.mean(dim=1), refiner.c_embedder)
    h = linear(x, refiner.input_embedder)
    for blk in refiner.individual_token_refiner.blocks:
        gate1, gate2 = linear(F.silu(cvec), blk.adaLN_modulation[1]).chunk(2, dim=-1)
        q, k, v = linear(affine_layer_norm(h, blk.norm1), blk.self_attn.qkv).chunk(3, dim=-1)
        a = attention(heads(q, blk.heads), heads(k, blk.heads), heads(v, blk.heads))
        h = h + linear(a, blk.self_attn.proj) * gate1[:, None]
        hidden = F.silu(linear(affine_layer_norm(h, blk.norm2), blk.mlp[0]))
        h = h + linear(hidden, blk.mlp[2]) * gate2[:, None]
    return h


def concept_tokens(dm, embeddings, t, together=False):
    """The concept stream entering block 0, [B, C, D]: each concept alone through the refiner (or, for the
    test that this matters, all concepts as one sequence), plus the text token type (1.5)."""
    e = embeddings.float()
    batch, count = t.shape[0], e.shape[0]
    if together:
        c = token_refiner(dm.txt_in, e[None].expand(batch, -1, -1), t)
    else:
        alone = e[None, :, None, :].expand(batch, -1, -1, -1).reshape(batch * count, 1, -1)
        c = token_refiner(dm.txt_in, alone, t.repeat_interleave(count)).reshape(batch, count, -1)
    if dm.cond_type_embedding is not None:
        c = c + dm.cond_type_embedding.weight[0].float()
    return c


def concept_vec(dm, call, zero_pooled=True):
    """Timestep (+ MeanFlow's time_r) + guidance embedding + a zero (or the prompt's) pooled vector, [B, D]."""
    t = call["t"].float()
    vec = mlp_embed(sinusoid(t, time_factor=1.0), dm.time_in)
    if dm.time_r_in is not None and not call["disable_time_r"]:
        hits = torch.where(call["sigmas"][0] == call["sample_sigmas"])[0]
        if len(hits):
            vec_r = mlp_embed(sinusoid(call["sample_sigmas"][hits[0] + 1][None], time_factor=1000.0), dm.time_r_in)
            vec = vec + vec_r if dm.params.meanflow_sum else (vec + vec_r) / 2
    if dm.vector_in is not None:
        width = dm.params.vec_in_dim
        pooled = torch.zeros(t.shape[0], width) if zero_pooled else call["y"][:, :width].float()
        vec = vec + mlp_embed(pooled, dm.vector_in)
    if dm.params.guidance_embed and call["guidance"] is not None:
        vec = vec + mlp_embed(sinusoid(call["guidance"], time_factor=1000.0), dm.guidance_in)
    return vec


def rope_rotation(position, axes_dim, theta):
    """2x2 rotations [Dh/2, 2, 2] of one token at `position` (one coordinate per axis), written out."""
    rotations = []
    for p, dim in zip(position, axes_dim):
        omega = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        angle = (p * omega).float()
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotations.append(torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2))
    return torch.cat(rotations)


# ---------- one block ----------
def modulation(vec, mod):
    """Six modulation tensors, each [B, D] (or [B, 2, D] where vec has a first-frame row)."""
    return linear(F.silu(vec.float()), mod.lin).chunk(6, dim=-1)


def per_token(m, dims, length):
    """[B, length, D] modulation per token: the model's modulation_dims pick a row of m for each token range."""
    if dims is None:
        return m[:, None, :].expand(-1, length, -1)
    out = torch.empty(m.shape[0], length, m.shape[-1])
    for start, stop, row in dims:
        out[:, start:stop] = m[:, row:row + 1]
    return out


@torch.no_grad()
def hunyuan_reference(dm, call, embeddings, blocks, *, zero_pooled=True, concept_position=None,
                      refine_together=False):
    """Saliency per recorded block for one model call: {block: [B, N_gen, C]} over all rows."""
    n_gen = math.prod(grid(dm, call["x_shape"]))
    c = concept_tokens(dm, embeddings, call["t"].float(), refine_together)
    cvec = concept_vec(dm, call, zero_pooled)
    batch, count = c.shape[:2]
    position = concept_position or [0] * len(dm.params.axes_dim)  # text ids are all zero
    rot_c = rope_rotation(position, dm.params.axes_dim, dm.params.theta)[None, None, None].expand(
        batch, 1, count, -1, -1, -1)
    out = {}
    for i in range(max(blocks) + 1):
        block, inp = dm.double_blocks[i], call["blocks"][i]
        n_heads = block.num_heads
        img, txt, vec, pe = inp["img"].float(), inp["txt"].float(), inp["vec"].float(), inp["pe"]
        T, L = txt.shape[1], txt.shape[1] + img.shape[1]
        im = [per_token(m, inp["modulation_dims_img"], img.shape[1]) for m in modulation(vec, block.img_mod)]
        tm = [per_token(m, inp["modulation_dims_txt"], T) for m in modulation(vec, block.txt_mod)]
        qi, ki, vi = flux_qkv(img, None, 1e-6, block.img_attn, n_heads, im[:2])
        qt, kt, vt = flux_qkv(txt, None, 1e-6, block.txt_attn, n_heads, tm[:2])
        cm = [m[:, None, :] for m in modulation(cvec, block.txt_mod)]
        qc, kc, vc = flux_qkv(c, None, 1e-6, block.txt_attn, n_heads, cm[:2])
        # one joint sequence [text; image; concepts], RoPE as the block applies it, concepts at `position`
        q = torch.cat([rotate(torch.cat([qt, qi], 2), pe), rotate(qc, rot_c)], 2)
        k = torch.cat([rotate(torch.cat([kt, ki], 2), pe), rotate(kc, rot_c)], 2)
        v = torch.cat([vt, vi, vc], 2)
        mask = torch.zeros(L + count, L + count)
        if inp["attn_mask"] is not None:  # the model's text-padding mask, for the text and image rows
            mask[:L, :L] += inp["attn_mask"].float().reshape(-1, L)[0]
        mask[:L, L:] = -math.inf                      # text and image never see the concepts
        mask[L:, :L - n_gen] = -math.inf              # concepts see neither text nor reference tokens
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask, dim=-1)
        joint = (weights @ v).transpose(1, 2).reshape(batch, L + count, -1)
        o_x, o_c = joint[:, L - n_gen:L], joint[:, L:]
        if i in blocks:
            out[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)
        c = c + cm[2] * linear(o_c, block.txt_attn.proj)
        h = layer_norm(c) * (1 + cm[4]) + cm[3]
        c = c + cm[5] * linear(gelu_tanh(linear(h, block.txt_mlp[0])), block.txt_mlp[2])
    return out


def expected_maps(dm, calls, embeddings, blocks, **options):
    """Mean over recorded blocks and schedule steps (each once, cond rows only) as [B, C, *grid]."""
    return reference.expected_maps(calls, lambda call: hunyuan_reference(dm, call, embeddings, blocks, **options),
                                   blocks, grid=grid(dm, calls[0]["x_shape"]))
