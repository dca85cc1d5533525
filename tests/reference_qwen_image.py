"""Independent re-derivation of ConceptAttention on the Qwen-Image family (SPEC.md section 3), for the tests.

A plainly written masked forward: from the inputs each block received in a real sampling run, it recomputes
the block's joint attention over [prompt; image (generated, then references); concepts] with one explicit
mask (prompt and image queries see the prompt, minus its padding, and the image; concept queries see the
generated image and the concepts), with explicit norms, modulation, RoPE and softmax read from the weights.
It shares no code with the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import reference
from reference import gelu_tanh, heads, layer_norm, linear, rotate, sinusoid


class QwenBlockInputs(reference.BlockInputs):
    """What each model call and each block of a real run received (forward pre-hooks)."""

    def __init__(self, dm):
        super().__init__(dm, dm.transformer_blocks, "qwen_image")

    def _on_model(self, module, args, kwargs):
        super()._on_model(module, args, kwargs)
        refs = kwargs.get("ref_latents")
        self.calls[-1].update(x_shape=tuple(args[0].shape), has_refs=bool(refs))

    def _on_block(self, i):
        def hook(module, args, kwargs):
            self.calls[-1]["blocks"][i] = {
                "img": kwargs["hidden_states"].clone(), "txt": kwargs["encoder_hidden_states"].clone(),
                "mask": kwargs["encoder_hidden_states_mask"], "temb": kwargs["temb"].clone(),
                "pe": kwargs["image_rotary_emb"], "zero_from": kwargs["timestep_zero_index"]}
        return hook


def rms(x, norm):
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + norm.eps) * norm.weight.float()


def explicit_rope(x, position: float, axes_dim, theta: float = 10000.0):
    """x [B, H, L, Dh] rotated as tokens at `position` on every axis: consecutive pairs of each axis' slice of
    the head dimension turn by position * theta^(-2j/dim_axis)."""
    freqs = torch.cat([theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d) for d in axes_dim])
    angle = (position * freqs).float()
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.stack([x0 * angle.cos() - x1 * angle.sin(), x0 * angle.sin() + x1 * angle.cos()], dim=-1)
    return out.flatten(-2)


def masked_attention(q, k, v, mask):
    """[B, H, L, Dh] with an additive [B, L, L] mask -> [B, L, H*Dh], explicit softmax."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask[:, None]
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def time_embedding(dm, t):
    """Qwen-Image's timestep embedding: sinusoid (cos first, t x 1000), two linears; plus Layered's
    additional-t embedding of class 0."""
    te = dm.time_text_embed.timestep_embedder
    emb = linear(F.silu(linear(sinusoid(t, 256, time_factor=1000.0), te.linear_1)), te.linear_2)
    if dm.time_text_embed.use_additional_t_cond:
        emb = emb + dm.time_text_embed.addition_t_embedding.weight[0].float()
    return emb


def modulated(x, params):
    """LayerNorm then shift/scale from params [rows, 3D] (shift, scale, gate); returns (x, gate)."""
    shift, scale, gate = params[:, None].chunk(3, dim=-1)
    return layer_norm(x) * (1 + scale) + shift, gate


def text_grid(x_shape):
    frames, h, w = x_shape[2], (x_shape[3] + 1) // 2, (x_shape[4] + 1) // 2
    return frames, h, w


def first_text_position(x_shape):
    _, h, w = text_grid(x_shape)
    return max(h // 2, w // 2)


def qwen_reference(dm, call, embeddings, blocks, concept_position=None, concept_timestep=None):
    """Saliency per recorded block for one model call: {block: [B, N_gen, C]} over all rows.

    concept_position: the concepts' text position (default: the first text position, txt_start);
    concept_timestep: t -> the timestep the concept modulation is built from (default: the model's t)."""
    n_heads = dm.transformer_blocks[0].attn.heads
    axes_dim = dm.pe_embedder.axes_dim
    frames, h, w = text_grid(call["x_shape"])
    n_gen = frames * h * w
    t = call["t"].float()
    batch = t.shape[0]
    position = first_text_position(call["x_shape"]) if concept_position is None else concept_position
    c = linear(rms(embeddings.float()[None].expand(batch, -1, -1), dm.txt_norm), dm.txt_in)
    c_temb = time_embedding(dm, t if concept_timestep is None else concept_timestep(t))
    out = {}
    for i in range(max(blocks) + 1):
        block, inp = dm.transformer_blocks[i], call["blocks"][i]
        attn = block.attn
        img, txt, temb, pe = inp["img"].float(), inp["txt"].float(), inp["temb"].float(), inp["pe"].float()
        n_txt, n_img, n_c = txt.shape[1], img.shape[1], c.shape[1]

        img_params = linear(F.silu(temb), block.img_mod[1])[:, :3 * img.shape[-1]]
        if inp["zero_from"] is not None:  # 2511: reference tokens use the second (timestep 0) half of temb
            cut = inp["zero_from"]
            img_a, _ = modulated(img[:, :cut], img_params[:batch])
            img_b, _ = modulated(img[:, cut:], img_params[batch:])
            img_h = torch.cat([img_a, img_b], dim=1)
            temb = temb[:batch]
        else:
            img_h, _ = modulated(img, img_params)
        txt_h, _ = modulated(txt, linear(F.silu(temb), block.txt_mod[1])[:, :3 * txt.shape[-1]])
        c_mod = linear(F.silu(c_temb), block.txt_mod[1])
        c_h, c_gate1 = modulated(c, c_mod[:, :3 * c.shape[-1]])

        def project(x, q, k, v, norm_q, norm_k):
            return (rms(heads(linear(x, q), n_heads), norm_q), rms(heads(linear(x, k), n_heads), norm_k),
                    heads(linear(x, v), n_heads))

        qi, ki, vi = project(img_h, attn.to_q, attn.to_k, attn.to_v, attn.norm_q, attn.norm_k)
        qt, kt, vt = project(txt_h, attn.add_q_proj, attn.add_k_proj, attn.add_v_proj, attn.norm_added_q,
                             attn.norm_added_k)
        qc, kc, vc = project(c_h, attn.add_q_proj, attn.add_k_proj, attn.add_v_proj, attn.norm_added_q,
                             attn.norm_added_k)
        q_pt = rotate(torch.cat([qt, qi], 2), pe)
        k_pt = rotate(torch.cat([kt, ki], 2), pe)
        q = torch.cat([q_pt, explicit_rope(qc, position, axes_dim)], 2)
        k = torch.cat([k_pt, explicit_rope(kc, position, axes_dim)], 2)
        v = torch.cat([vt, vi, vc], 2)

        length = n_txt + n_img + n_c
        concepts, generated = slice(n_txt + n_img, length), slice(n_txt, n_txt + n_gen)
        mask = torch.zeros(batch, length, length)
        if inp["mask"] is not None:  # the prompt's padding, as the model masks it (additive)
            mask[:, :n_txt + n_img, :n_txt] = inp["mask"].float()[:, None, :]
        mask[:, :n_txt + n_img, concepts] = -math.inf         # prompt and image never see the concepts
        mask[:, concepts] = -math.inf                         # concepts see only ...
        mask[:, concepts, generated] = 0                      # ... the generated image
        mask[:, concepts, concepts] = 0                       # ... and the concepts
        joint = masked_attention(q, k, v, mask)
        o_x, o_c = joint[:, generated], joint[:, concepts]
        if i in blocks:
            out[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)

        c = c + c_gate1 * linear(o_c, attn.to_add_out)
        c_h2, c_gate2 = modulated(c, c_mod[:, 3 * c.shape[-1]:])
        mlp = block.txt_mlp.net
        c = c + c_gate2 * linear(gelu_tanh(linear(c_h2, mlp[0].proj)), mlp[2])
    return out


def expected_maps(calls, dm, embeddings, blocks, steps=None, **options):
    """Mean over recorded blocks and schedule steps (cond rows) as [B, C, h, w], or [B, C, layers, h, w]."""
    frames, h, w = text_grid(calls[0]["x_shape"])
    grid = (frames, h, w) if frames > 1 else (h, w)
    return reference.expected_maps(calls, lambda call: qwen_reference(dm, call, embeddings, blocks, **options),
                                   blocks, steps, grid=grid)
