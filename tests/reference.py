"""An independent, plainly written re-derivation of ConceptAttention (SPEC.md section 1) for the tests.

It reads the weights of ComfyUI's tiny models and recomputes, from the inputs each joint block received in a
real sampling run: the block's joint attention with an explicit softmax (giving the image rows o_x), and
the concept stream from the equations. It shares no code with the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# ---------- recording what the real model saw ----------
class BlockInputs:
    """Forward pre-hooks that record each model call's timestep/guidance/options and each joint block's inputs."""

    def __init__(self, dm, blocks, family):
        self.calls = []
        self.family = family
        self.handles = [dm.register_forward_pre_hook(self._on_model, with_kwargs=True)]
        for i, block in enumerate(blocks):
            self.handles.append(block.register_forward_pre_hook(self._on_block(i), with_kwargs=True))

    def _on_model(self, module, args, kwargs):
        timesteps = args[1] if len(args) > 1 else kwargs.get("timesteps", kwargs.get("t"))
        options = kwargs.get("transformer_options", {})
        self.calls.append({"t": timesteps.clone(), "guidance": kwargs.get("guidance"), "y": kwargs.get("y"),
                           "x_hw": args[0].shape[-2:], "cond_or_uncond": list(options.get("cond_or_uncond", [0])),
                           "sigmas": options.get("sigmas"), "sample_sigmas": options.get("sample_sigmas"),
                           "blocks": {}})

    def _on_block(self, i):
        def hook(module, args, kwargs):
            if self.family == "flux":
                saved = {k: kwargs[k].clone() if torch.is_tensor(kwargs[k]) else kwargs[k]
                         for k in ("img", "txt", "vec", "pe")}
            else:  # JointBlock(context, x, c=...)
                saved = {"txt": args[0].clone(), "img": args[1].clone(), "vec": kwargs["c"].clone()}
            self.calls[-1]["blocks"][i] = saved
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


# ---------- plain building blocks ----------
def linear(x, layer):
    y = x @ layer.weight.float().t()
    return y + layer.bias.float() if layer.bias is not None else y


def layer_norm(x, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def rms_norm(x, weight, eps):
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + eps) * weight.float()


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(q, k, v):
    """[B, H, Lq, Dh] x [B, H, Lk, Dh] -> [B, Lq, H*Dh] with an explicit softmax."""
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    out = weights @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def heads(x, n):
    """[B, L, H*Dh] -> [B, H, L, Dh]"""
    return x.reshape(x.shape[0], x.shape[1], n, -1).transpose(1, 2)


def rotate(x, pe):
    """RoPE as 2x2 rotations of consecutive pairs: pe [B, 1, L, Dh/2, 2, 2], x [B, H, L, Dh]."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    return torch.einsum("bhlpij,bhlpj->bhlpi", pe.float().expand(-1, x.shape[1], -1, -1, -1, -1), pairs).reshape(x.shape)


def sinusoid(t, dim=256, max_period=10000, time_factor=1.0):
    t = t.float() * time_factor
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def mlp_embed(x, embedder):
    return linear(F.silu(linear(x, embedder.in_layer)), embedder.out_layer)


# ---------- Flux.1 ----------
def flux_qkv(x, mod_lin, norm1_eps, attn, n_heads, shift_scale):
    shift, scale = shift_scale
    h = layer_norm(x, norm1_eps) * (1 + scale) + shift
    q, k, v = linear(h, attn.qkv).chunk(3, dim=-1)
    q, k, v = heads(q, n_heads), heads(k, n_heads), heads(v, n_heads)
    qn, kn = attn.norm.query_norm, attn.norm.key_norm
    q = rms_norm(q, qn.weight, qn.eps or torch.finfo(torch.float32).eps)
    k = rms_norm(k, kn.weight, kn.eps or torch.finfo(torch.float32).eps)
    return q, k, v


def modulation(vec, mod):
    return linear(F.silu(vec), mod.lin)[:, None, :].chunk(6, dim=-1)


def flux_concept_vec(dm, t, guidance, zero_pooled=True, y=None):
    vec = mlp_embed(sinusoid(t, time_factor=1000.0), dm.time_in)
    if guidance is not None:
        vec = vec + mlp_embed(sinusoid(guidance, time_factor=1000.0), dm.guidance_in)
    pooled = torch.zeros(t.shape[0], dm.params.vec_in_dim) if zero_pooled else y[:, :dm.params.vec_in_dim].float()
    return vec + mlp_embed(pooled, dm.vector_in)


def flux_reference(dm, call, embeddings, blocks, zero_pooled=True):
    """Saliency per recorded block for one model call: {block: [B, N_gen, C]} over all rows."""
    n_heads = dm.double_blocks[0].num_heads
    hw = call["x_hw"]
    n_gen = ((hw[0] + 1) // 2) * ((hw[1] + 1) // 2)
    batch = call["t"].shape[0]
    c = linear(embeddings.float()[None].expand(batch, -1, -1), dm.txt_in)
    cvec = flux_concept_vec(dm, call["t"], call["guidance"], zero_pooled, call["y"])
    out = {}
    for i in range(max(blocks) + 1):
        block, inp = dm.double_blocks[i], call["blocks"][i]
        img, txt, vec, pe = inp["img"].float(), inp["txt"].float(), inp["vec"].float(), inp["pe"]
        img_m, txt_m = modulation(vec, block.img_mod), modulation(vec, block.txt_mod)
        qi, ki, vi = flux_qkv(img, None, 1e-6, block.img_attn, n_heads, img_m[:2])
        qt, kt, vt = flux_qkv(txt, None, 1e-6, block.txt_attn, n_heads, txt_m[:2])
        q, k, v = torch.cat([qt, qi], 2), torch.cat([kt, ki], 2), torch.cat([vt, vi], 2)
        q, k = rotate(q, pe), rotate(k, pe)
        joint = attention(q, k, v)
        T = txt.shape[1]
        o_x = joint[:, T:T + n_gen]
        # concept stream: text weights, text modulation of the concept vector, RoPE at text position 0 (identity)
        cm = modulation(cvec, block.txt_mod)
        qc, kc, vc = flux_qkv(c, None, 1e-6, block.txt_attn, n_heads, cm[:2])
        # concept queries see the generated image's keys (not the prompt's, not reference images') and their own
        o_c = attention(qc, torch.cat([k[:, :, T:T + n_gen], kc], 2), torch.cat([v[:, :, T:T + n_gen], vc], 2))
        if i in blocks:
            out[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)
        c = c + cm[2] * linear(o_c, block.txt_attn.proj)
        h = layer_norm(c) * (1 + cm[4]) + cm[3]
        c = c + cm[5] * linear(gelu_tanh(linear(h, block.txt_mlp[0])), block.txt_mlp[2])
    return out


# ---------- SD3 / SD3.5 MMDiT ----------
def sd3_modulation(vec, block, n):
    return linear(F.silu(vec), block.adaLN_modulation[1])[:, None, :].chunk(n, dim=-1)


def sd3_qkv(x, block, shift, scale, n_heads):
    h = layer_norm(x) * (1 + scale) + shift
    q, k, v = linear(h, block.attn.qkv).chunk(3, dim=-1)
    q, k, v = heads(q, n_heads), heads(k, n_heads), heads(v, n_heads)
    if hasattr(block.attn.ln_q, "weight"):
        q = rms_norm(q, block.attn.ln_q.weight, block.attn.ln_q.eps)
        k = rms_norm(k, block.attn.ln_k.weight, block.attn.ln_k.eps)
    return q, k, v


def sd3_concept_vec(dm, t):
    mlp = dm.t_embedder.mlp
    vec = linear(F.silu(linear(sinusoid(t), mlp[0])), mlp[2])
    zero = torch.zeros(t.shape[0], dm.y_embedder.mlp[0].in_features)
    return vec + linear(F.silu(linear(zero, dm.y_embedder.mlp[0])), dm.y_embedder.mlp[2])


def sd3_reference(dm, call, embeddings, blocks):
    hw = call["x_hw"]
    n_gen = ((hw[0] + 1) // 2) * ((hw[1] + 1) // 2)
    batch = call["t"].shape[0]
    c = linear(embeddings.float()[None].expand(batch, -1, -1), dm.context_embedder)
    cvec = sd3_concept_vec(dm, call["t"])
    out = {}
    for i in range(max(blocks) + 1):
        joint, inp = dm.joint_blocks[i], call["blocks"][i]
        ctx_b, x_b = joint.context_block, joint.x_block
        n_heads = x_b.attn.num_heads
        img, txt, vec = inp["img"].float(), inp["txt"].float(), inp["vec"].float()
        xm = sd3_modulation(vec, x_b, 9 if x_b.x_block_self_attn else 6)
        tm = sd3_modulation(vec, ctx_b, 2 if ctx_b.pre_only else 6)
        qi, ki, vi = sd3_qkv(img, x_b, xm[0], xm[1], n_heads)
        qt, kt, vt = sd3_qkv(txt, ctx_b, tm[0], tm[1], n_heads)
        joint_out = attention(torch.cat([qt, qi], 2), torch.cat([kt, ki], 2), torch.cat([vt, vi], 2))
        T = txt.shape[1]
        o_x = joint_out[:, T:T + n_gen]
        cm = sd3_modulation(cvec, ctx_b, 2 if ctx_b.pre_only else 6)
        qc, kc, vc = sd3_qkv(c, ctx_b, cm[0], cm[1], n_heads)
        o_c = attention(qc, torch.cat([ki, kc], 2), torch.cat([vi, vc], 2))
        if i in blocks:
            out[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)
        if not ctx_b.pre_only:  # the last block is pre-only: no update of the concept stream
            c = c + cm[2] * linear(o_c, ctx_b.attn.proj)
            h = layer_norm(c) * (1 + cm[4]) + cm[3]
            c = c + cm[5] * linear(gelu_tanh(linear(h, ctx_b.mlp.fc1)), ctx_b.mlp.fc2)
    return out


def expected_maps(calls, per_call, blocks, steps=None, grid=None, patch=2):
    """Mean over recorded blocks and schedule steps of the cond rows' saliency, as [B, C, *grid] (default grid:
    the latent's (h, w) in patches of `patch` x `patch`).

    A step counts once (the first model call at that sigma); calls at sigmas off the schedule do not count."""
    total, count, call_grid, seen = None, 0, None, set()
    for call in calls:
        hits = torch.isclose(call["sample_sigmas"], call["sigmas"][:1].float(), rtol=1e-4).nonzero()
        if len(hits) == 0:
            continue
        step = int(hits[0, 0])
        if (steps is not None and step not in steps) or (step in seen and 0 in call["cond_or_uncond"]):
            continue
        if 0 in call["cond_or_uncond"]:
            seen.add(step)
        cou = call["cond_or_uncond"]
        per = call["t"].shape[0] // len(cou)
        saliency = per_call(call)
        for j, kind in enumerate(cou):
            if kind != 0:
                continue
            for b in blocks:
                s = saliency[b][j * per:(j + 1) * per]
                total = s if total is None else total + s
                count += 1
        if grid is None:
            hw = call["x_hw"]
            call_grid = ((hw[0] + patch - 1) // patch, (hw[1] + patch - 1) // patch)
    maps = total / count
    return maps.transpose(1, 2).reshape(maps.shape[0], maps.shape[2], *(grid or call_grid))


# ---------- checks that a comparison can fail ----------
def assert_maps_are_discriminating(maps, expected, atol=1e-5, rtol=1e-4):
    """A flat map (the same value at every token) passes any spatial mix-up, so a comparison proves something
    only when the maps vary across tokens far above float noise and the expected maps shifted by one token row
    no longer match. maps, expected: [B, C, h, w]."""
    spread = maps.flatten(2).std(-1)  # [B, C]: over the tokens
    assert spread.min() > 100 * atol, f"maps are nearly flat across tokens (smallest std {spread.min():.2e})"
    shifted = expected.roll(1, dims=2)
    assert not torch.allclose(maps, shifted, rtol=rtol, atol=atol), "maps match the expected ones shifted by a row"
