"""An independent, plainly written masked forward of NextDiT's joint layers (SPEC.md section 3) for the tests.

From the inputs each joint layer received in a real sampling run, it runs the layer's math, written out (explicit
RMS norms, modulation, RoPE rotations, softmax, SwiGLU, read from the weights), on [the model's own rows; concepts]
with the concept mask: the model's rows see only the model's rows, the concepts see the generated image's real
tokens and the concepts. It checks that the model's own rows come out as the next layer's recorded input (so this
is the model's math), and returns the saliency per layer. Shares no code with the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import reference
from reference import linear, rms_norm


class LayerInputs(reference.BlockInputs):
    """Forward pre-hooks recording each model call (timestep, caption, pooled text, reference latents) and each
    joint layer's inputs (rows, rotations, timestep vector)."""

    def __init__(self, dm):
        super().__init__(dm, dm.layers, "nextdit")

    def _on_model(self, module, args, kwargs):
        super()._on_model(module, args, kwargs)
        call = self.calls[-1]
        call.update(context=kwargs["context"].clone(), pooled=kwargs.get("clip_text_pooled"),
                    refs=list(kwargs.get("ref_latents") or []), latent_hw=call["x_hw"])
        # reference.expected_maps reads the token grid off x_hw for 2x2 patches: the grid in those units
        call["x_hw"] = tuple(math.ceil(s / module.patch_size) * 2 for s in call["latent_hw"])

    def _on_block(self, i):
        def hook(module, args, kwargs):
            self.calls[-1]["blocks"][i] = {"x": args[0].clone(), "freqs": args[2].clone(), "vec": args[3].clone()}
        return hook


# ---------- the joint sequence's rows, derived from the call ----------
def joint_rows(dm, call):
    """Row ranges of the joint sequence in NextDiT's order: the captions (reference captions first; each a
    multiple of 32 rows with padding on Z-Image), then in omni mode the SigLIP rows (here only padding: one block per
    image) and the reference images, then the generated image (real tokens, then its padding)."""
    multiple = dm.pad_tokens_multiple

    def padded(n):
        return n + (-n) % multiple if multiple else n

    def tokens(hw):
        return math.ceil(hw[0] / dm.patch_size) * math.ceil(hw[1] / dm.patch_size)

    ref_captions = [multiple] * len(call["refs"])  # no reference caption given: one block of caption padding each
    caption = call["context"].shape[1]
    ref_images = [padded(tokens(r.shape[-2:])) for r in call["refs"]]
    siglip = multiple * (len(call["refs"]) + 1) if call["refs"] and dm.siglip_embedder is not None else 0
    image = tokens(call["latent_hw"])
    caption_start = sum(ref_captions)
    image_start = caption_start + padded(caption) + siglip + sum(ref_images)
    return {
        "caption": (caption_start, caption_start + caption),
        "caption_padding": (caption_start + caption, caption_start + padded(caption)),
        "references": (caption_start + padded(caption), image_start),  # SigLIP rows and reference images
        "image": (image_start, image_start + image),
        "image_padding": (image_start + image, image_start + padded(image)),
        "length": image_start + padded(image),
    }


# ---------- plain building blocks ----------
def rotations(positions, axes_dims, theta):
    """RoPE as 2x2 rotation matrices [1, L, 1, Dh/2, 2, 2] for positions [L, 3] (one angle per pair and axis)."""
    angles = []
    for axis, dim in enumerate(axes_dims):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        angles.append(positions[:, axis:axis + 1].double() * freqs[None])
    a = torch.cat(angles, dim=-1).float()
    matrix = torch.stack([torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a)], dim=-1)
    return matrix.reshape(1, a.shape[0], 1, a.shape[1], 2, 2)


def rotate(x, rot):
    """x [B, L, H, Dh] with rotation matrices [1, L, 1, Dh/2, 2, 2] applied to consecutive pairs."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    return torch.einsum("blhpij,blhpj->blhpi", rot.float().expand(x.shape[0], -1, x.shape[2], -1, -1, -1),
                        pairs).reshape(x.shape)


def eps(norm):
    return norm.eps or torch.finfo(torch.float32).eps


def masked_attention(q, k, v, allowed):
    """q, k, v [B, L, H, Dh]; allowed [L, L] (query row, key column) -> [B, L, H*Dh], explicit softmax."""
    logits = torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(q.shape[-1])
    weights = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.einsum("bhlm,bmhd->blhd", weights, v).flatten(2)


def layer_math(layer, x, rot, allowed, mod=None):
    """One NextDiT layer on rows x [B, L, D]: returns (new rows, attention output before the projection).
    mod: per-row (scale_msa, gate_msa, scale_mlp, gate_mlp), each [B, L, D]; None for the refiners."""
    attn = layer.attention
    heads, kv_heads, head_dim = attn.n_local_heads, attn.n_local_kv_heads, attn.head_dim
    h = rms_norm(x, layer.attention_norm1.weight, eps(layer.attention_norm1))
    if mod is not None:
        h = h * (1 + mod[0])
    qkv = linear(h, attn.qkv)
    q = qkv[..., :heads * head_dim].reshape(*x.shape[:2], heads, head_dim)
    k = qkv[..., heads * head_dim:(heads + kv_heads) * head_dim].reshape(*x.shape[:2], kv_heads, head_dim)
    v = qkv[..., (heads + kv_heads) * head_dim:].reshape(*x.shape[:2], kv_heads, head_dim)
    q = rotate(rms_norm(q, attn.q_norm.weight, eps(attn.q_norm)), rot)
    k = rotate(rms_norm(k, attn.k_norm.weight, eps(attn.k_norm)), rot)
    group = heads // kv_heads  # query head j reads key/value head j // group
    k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    o = masked_attention(q, k, v, allowed)
    attended = rms_norm(linear(o, attn.out), layer.attention_norm2.weight, eps(layer.attention_norm2))
    x = x + (attended if mod is None else torch.tanh(mod[1]) * attended)
    h = rms_norm(x, layer.ffn_norm1.weight, eps(layer.ffn_norm1))
    if mod is not None:
        h = h * (1 + mod[2])
    ff = layer.feed_forward
    fed = rms_norm(linear(F.silu(linear(h, ff.w1)) * linear(h, ff.w3), ff.w2), layer.ffn_norm2.weight,
                   eps(layer.ffn_norm2))
    return x + (fed if mod is None else torch.tanh(mod[3]) * fed), o


def modulation(layer, vec):
    """(scale_msa, gate_msa, scale_mlp, gate_mlp) from timestep vectors vec [..., Dt]: Lumina 2 applies SiLU first,
    Z-Image's scale-only modulation is the bare linear."""
    seq = layer.adaLN_modulation
    inp = F.silu(vec) if isinstance(seq[0], torch.nn.SiLU) else vec
    return linear(inp, seq[-1]).chunk(4, dim=-1)


def timestep_vec(dm, t, pooled=None):
    """adaln_input: MLP of the sinusoid of (1 - t) * time_scale; NewBie adds the pooled-text projection."""
    mlp = dm.t_embedder.mlp
    vec = linear(F.silu(linear(reference.sinusoid((1.0 - t.float()) * dm.time_scale), mlp[0])), mlp[2])
    if dm.clip_text_pooled_proj is not None:
        proj = dm.clip_text_pooled_proj
        pooled = linear(rms_norm(pooled.float(), proj[0].weight, eps(proj[0])), proj[1])
        vec = linear(F.silu(torch.cat([vec, pooled], dim=-1)), dm.time_text_embed[1])
    return vec


def concept_entry(dm, embeddings, position):
    """Each concept alone as a one-token caption: the caption embedder, then the context refiner."""
    norm, lin = dm.cap_embedder
    c = linear(rms_norm(embeddings.float(), norm.weight, eps(norm)), lin)[:, None]  # [C, 1, D]
    rot = rotations(torch.tensor([[position, 0.0, 0.0]]), dm.axes_dims, dm.rope_embedder.theta)
    for layer in dm.context_refiner:
        c, _ = layer_math(layer, c, rot, torch.ones(1, 1, dtype=torch.bool))
    return c[:, 0]


# ---------- the masked forward ----------
def nextdit_reference(dm, call, embeddings, blocks, *, position=1.0, zero_pooled=True, padding_keys=False,
                      reference_keys=False):
    """Saliency per recorded layer for one model call: {layer: [B, N, C]} over all rows of the call.

    position: the concepts' text position (axis 0). zero_pooled=False gives NewBie's concepts the prompt's pooled
    text; padding_keys / reference_keys let the concepts also see the padding rows / the omni reference rows
    (the variants the tests show to differ)."""
    rows = joint_rows(dm, call)
    batch = call["t"].shape[0]
    pooled = call["pooled"]
    if pooled is not None and zero_pooled:
        pooled = torch.zeros_like(pooled)
    concept_vec = timestep_vec(dm, call["t"], pooled)[:, None]
    c = concept_entry(dm, embeddings, position)[None].expand(batch, -1, -1)
    count = c.shape[1]
    concept_rot = rotations(torch.tensor([[position, 0.0, 0.0]] * count), dm.axes_dims, dm.rope_embedder.theta)
    out = {}
    for i in range(max(blocks) + 1):
        layer, inp = dm.layers[i], call["blocks"][i]
        x, vec = inp["x"].float(), inp["vec"].float()
        length = x.shape[1]
        assert length == rows["length"], "the joint sequence is [captions; reference images; image]"
        row_vec = vec[:, None].expand(-1, length, -1)
        if call["refs"]:  # omni: vec is [reference timestep rows; real timestep rows]; the real one for the
            real = torch.zeros(length, dtype=torch.bool)  # generated image's caption and image (with padding)
            for name in ("caption", "caption_padding", "image", "image_padding"):
                real[slice(*rows[name])] = True
            row_vec = torch.where(real[None, :, None], vec[batch:, None], vec[:batch, None])
        if not call["refs"] and pooled is None:
            torch.testing.assert_close(concept_vec[:, 0], vec, rtol=1e-5, atol=1e-5)  # the model's own vector
        mod = [torch.cat([m_x, m_c.expand(-1, count, -1)], dim=1)
               for m_x, m_c in zip(modulation(layer, row_vec), modulation(layer, concept_vec))]
        allowed = torch.zeros(length + count, length + count, dtype=torch.bool)
        allowed[:length, :length] = True                   # the model's rows never see the concepts
        keys = [rows["image"]] + ([rows["caption_padding"], rows["image_padding"]] if padding_keys else []) \
            + ([rows["references"]] if reference_keys else [])
        for key in keys:
            allowed[length:, slice(*key)] = True           # concepts: the generated image's tokens
        allowed[length:, length:] = True                   # ... and the concepts
        new, o = layer_math(layer, torch.cat([x, c], dim=1), torch.cat([inp["freqs"].float(), concept_rot], dim=1),
                            allowed, mod)
        if i + 1 in call["blocks"]:  # the re-derivation is the model's math: its rows match the next layer's input
            torch.testing.assert_close(new[:, :length], call["blocks"][i + 1]["x"].float(), rtol=1e-4, atol=1e-4)
        if i in blocks:
            o_x, o_c = o[:, slice(*rows["image"])], o[:, length:]
            out[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)
        c = new[:, length:]
    return out


def expected_maps(dm, calls, embeddings, blocks, steps=None, **options):
    """Mean over recorded layers and schedule steps of the cond rows' saliency, as [B, C, h, w]."""
    return reference.expected_maps(calls, lambda call: nextdit_reference(dm, call, embeddings, blocks, **options),
                                   blocks, steps)
