"""Independent re-derivation of ConceptAttention on Lens (SPEC.md section 3), for the tests.

A plainly written masked forward over [image; prompt; concepts] (Lens puts the image first), with explicit
RMS norms, modulation, SwiGLU MLP, RoPE and softmax read from the weights. It shares no code with the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import reference
from reference import heads, linear, rotate, sinusoid
from reference_qwen_image import explicit_rope, masked_attention, rms


class LensBlockInputs(reference.BlockInputs):
    """What each model call and each block of a real run received (forward pre-hooks)."""

    def __init__(self, dm):
        super().__init__(dm, dm.transformer_blocks, "lens")

    def _on_model(self, module, args, kwargs):
        super()._on_model(module, args, kwargs)
        self.calls[-1]["x_shape"] = tuple(args[0].shape)

    def _on_block(self, i):
        def hook(module, args, kwargs):
            self.calls[-1]["blocks"][i] = {
                "img": kwargs["hidden_states"].clone(), "txt": kwargs["encoder_hidden_states"].clone(),
                "temb": kwargs["temb"].clone(), "pe": kwargs["freqs_cis"], "mask": kwargs["attention_mask"]}
        return hook


def modulated(x, norm, params):
    """RMSNorm then shift/scale from params [rows, 3D] (shift, scale, gate); returns (x, gate)."""
    shift, scale, gate = params[:, None].chunk(3, dim=-1)
    return rms(x, norm) * (1 + scale) + shift, gate


def first_text_position(x_shape):
    return max(x_shape[2] // 2, x_shape[3] // 2)


def text_input(dm, embeddings, batch):
    """Per-layer RMSNorm of the side-by-side encoder layers, then txt_in."""
    e = embeddings.float()[None].expand(batch, -1, -1)
    width = dm.txt_norm[0].weight.shape[0]
    normed = [rms(e[..., j * width:(j + 1) * width], norm) for j, norm in enumerate(dm.txt_norm)]
    return linear(torch.cat(normed, dim=-1), dm.txt_in)


def lens_reference(dm, call, embeddings, blocks, concept_position=None):
    """Saliency per recorded block for one model call: {block: [B, N, C]} over all rows."""
    n_heads = dm.transformer_blocks[0].attn.heads
    t = call["t"].float()
    batch = t.shape[0]
    position = first_text_position(call["x_shape"]) if concept_position is None else concept_position
    c = text_input(dm, embeddings, batch)
    te = dm.time_text_embed.timestep_embedder
    c_temb = linear(F.silu(linear(sinusoid(t, 256, time_factor=1000.0), te.linear_1)), te.linear_2)
    out = {}
    for i in range(max(blocks) + 1):
        block, inp = dm.transformer_blocks[i], call["blocks"][i]
        attn = block.attn
        img, txt, temb, pe = inp["img"].float(), inp["txt"].float(), inp["temb"].float(), inp["pe"].float()
        n_img, n_txt, n_c = img.shape[1], txt.shape[1], c.shape[1]
        dim = img.shape[-1]
        img_h, _ = modulated(img, block.img_norm1, linear(F.silu(temb), block.img_mod[1])[:, :3 * dim])
        txt_mod = linear(F.silu(temb), block.txt_mod[1])
        txt_h, _ = modulated(txt, block.txt_norm1, txt_mod[:, :3 * dim])
        c_mod = linear(F.silu(c_temb), block.txt_mod[1])
        c_h, c_gate1 = modulated(c, block.txt_norm1, c_mod[:, :3 * dim])

        def project(x, qkv, norm_q, norm_k):
            q, k, v = linear(x, qkv).chunk(3, dim=-1)
            return rms(heads(q, n_heads), norm_q), rms(heads(k, n_heads), norm_k), heads(v, n_heads)

        qi, ki, vi = project(img_h, attn.img_qkv, attn.norm_q, attn.norm_k)
        qt, kt, vt = project(txt_h, attn.txt_qkv, attn.norm_added_q, attn.norm_added_k)
        qc, kc, vc = project(c_h, attn.txt_qkv, attn.norm_added_q, attn.norm_added_k)
        q = torch.cat([rotate(torch.cat([qi, qt], 2), pe), explicit_rope(qc, position, dm.pos_embed.axes_dim)], 2)
        k = torch.cat([rotate(torch.cat([ki, kt], 2), pe), explicit_rope(kc, position, dm.pos_embed.axes_dim)], 2)
        v = torch.cat([vi, vt, vc], 2)

        length = n_img + n_txt + n_c
        image, concepts = slice(0, n_img), slice(n_img + n_txt, length)
        mask = torch.zeros(batch, length, length)
        if inp["mask"] is not None:  # the prompt's padding (Lens' joint additive mask over [image; prompt])
            mask[:, :n_img + n_txt, :n_img + n_txt] = inp["mask"].float()[:, 0]
        mask[:, :n_img + n_txt, concepts] = -math.inf    # image and prompt never see the concepts
        mask[:, concepts] = -math.inf                    # concepts see only the image and the concepts
        mask[:, concepts, image] = 0
        mask[:, concepts, concepts] = 0
        joint = masked_attention(q, k, v, mask)
        o_x, o_c = joint[:, image], joint[:, concepts]
        if i in blocks:
            out[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)

        c = c + c_gate1 * linear(o_c, attn.to_add_out)
        c_h2, c_gate2 = modulated(c, block.txt_norm2, c_mod[:, 3 * dim:])
        mlp = block.txt_mlp
        c = c + c_gate2 * linear(F.silu(linear(c_h2, mlp.w1)) * linear(c_h2, mlp.w3), mlp.w2)
    return out


def expected_maps(calls, dm, embeddings, blocks, steps=None, **options):
    """Mean over recorded blocks and schedule steps (cond rows) as [B, C, h, w] (one token per latent pixel)."""
    grid = tuple(calls[0]["x_shape"][2:])
    return reference.expected_maps(calls, lambda call: lens_reference(dm, call, embeddings, blocks, **options),
                                   blocks, steps, grid=grid)
