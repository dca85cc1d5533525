"""An independent, plainly written re-derivation of ConceptAttention on CogVideoX (SPEC.md section 3): a MASKED
FORWARD of each block over [text; video; concepts].

From the inputs each block received in a real sampling run (recorded with forward pre-hooks), it recomputes the
block with the concepts appended to its joint sequence and an explicit mask: concept queries see the video's
keys and the concepts' keys only; text and video queries never see concept keys. The expert adaLN (one linear,
six chunks: the video's shift/scale/gate, then the text's), LayerNorms, QK LayerNorms, the interleaved RoPE of
the video rows and the softmax are written out from the weights. The concept stream enters through `text_proj`
with the timestep (+ ofs) embedding computed here from the model's inputs. It shares no code with the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import reference
from reference import gelu_tanh, heads, layer_norm, linear, sinusoid


class BlockInputs:
    """Forward pre-hooks recording each model call's inputs and each block's keyword arguments."""

    def __init__(self, dm):
        self.calls = []
        self.handles = [dm.register_forward_pre_hook(self._on_model, with_kwargs=True)]
        for i, block in enumerate(dm.blocks):
            self.handles.append(block.register_forward_pre_hook(self._on_block(i), with_kwargs=True))

    def _on_model(self, module, args, kwargs):
        options = kwargs.get("transformer_options", {})
        self.calls.append({"t": args[1].clone(), "x_shape": tuple(args[0].shape), "ofs": kwargs.get("ofs"),
                           "cond_or_uncond": list(options.get("cond_or_uncond", [0])),
                           "sigmas": options.get("sigmas"), "sample_sigmas": options.get("sample_sigmas"),
                           "blocks": {}})

    def _on_block(self, i):
        def hook(module, args, kwargs):
            self.calls[-1]["blocks"][i] = {k: kwargs[k] for k in ("hidden_states", "encoder_hidden_states", "temb",
                                                                  "image_rotary_emb")}
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def grid(dm, x_shape):
    """The maps' grid: (latent frames, h, w), ceil over the spatial patch."""
    return (x_shape[2], math.ceil(x_shape[3] / dm.patch_size), math.ceil(x_shape[4] / dm.patch_size))


# ---------- the concept stream's entry ----------
def mlp(x, first, second):
    return linear(F.silu(linear(x, first)), second)


def concept_vec(dm, call, ofs=True):
    """The concepts' modulation input [B, time_dim]: the timestep embedding (cos first), + the ofs embedding."""
    vec = mlp(sinusoid(call["t"], dim=dm.time_proj_dim), dm.time_embedding_linear_1, dm.time_embedding_linear_2)
    if ofs and dm.ofs_embedding_linear_1 is not None:
        vec = vec + mlp(sinusoid(call["ofs"], dim=dm.ofs_proj_dim), dm.ofs_embedding_linear_1,
                        dm.ofs_embedding_linear_2)
    return vec


# ---------- one block ----------
def affine_layer_norm(x, norm):
    return layer_norm(x, norm.eps) * norm.weight.float() + norm.bias.float()


def adaln(norm, temb):
    """The six [B, 1, D] chunks of a CogVideoXLayerNormZero: video shift, scale, gate; text shift, scale, gate."""
    return [m[:, None] for m in linear(F.silu(temb.float()), norm.linear).chunk(6, dim=-1)]


def rope(x, cos, sin):
    """Interleaved RoPE: pairs (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin), cos/sin [L, Dh] per position."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).reshape(x.shape)
    return x * cos.float() + rotated * sin.float()


def qkv(block, x):
    n = block.num_heads
    q, k, v = heads(linear(x, block.q), n), heads(linear(x, block.k), n), heads(linear(x, block.v), n)
    return affine_layer_norm(q, block.norm_q), affine_layer_norm(k, block.norm_k), v


def feed_forward(block, x):
    return linear(gelu_tanh(linear(x, block.ff_proj)), block.ff_out)


@torch.no_grad()
def masked_forward(dm, call, embeddings, blocks, *, concept_modulation="text", concept_rope=None, ofs=True):
    """The masked forward of one model call up to the last of `blocks`. Returns ({block: saliency [B, N, C]},
    {block: (video output, text output)}), over all rows, N the video's tokens.

    Options for the tests that each rule matters: concept_modulation="video" gives the concepts the video's
    adaLN chunks; concept_rope=j rotates them as video token j; ofs=False leaves the ofs embedding out."""
    batch = call["t"].shape[0]
    c = linear(embeddings.float()[None].expand(batch, -1, -1), dm.patch_embed.text_proj)
    cvec = concept_vec(dm, call, ofs)
    saliency, outputs = {}, {}
    for i in range(max(blocks) + 1):
        block, inp = dm.blocks[i], call["blocks"][i]
        img, txt, temb = inp["hidden_states"].float(), inp["encoder_hidden_states"].float(), inp["temb"].float()
        T, N, C = txt.shape[1], img.shape[1], c.shape[1]
        m1, m2 = adaln(block.norm1, temb), adaln(block.norm2, temb)
        c1, c2 = adaln(block.norm1, cvec), adaln(block.norm2, cvec)
        if concept_modulation == "video":  # the video's chunks in the text's places
            c1, c2 = c1[:3] + c1[:3], c2[:3] + c2[:3]
        seq = torch.cat([affine_layer_norm(txt, block.norm1.norm) * (1 + m1[4]) + m1[3],
                         affine_layer_norm(img, block.norm1.norm) * (1 + m1[1]) + m1[0],
                         affine_layer_norm(c, block.norm1.norm) * (1 + c1[4]) + c1[3]], dim=1)
        q, k, v = qkv(block, seq)
        if inp["image_rotary_emb"] is not None:  # the video's rows only; text and concepts are not rotated
            cos, sin = inp["image_rotary_emb"]
            q[:, :, T:T + N], k[:, :, T:T + N] = rope(q[:, :, T:T + N], cos, sin), rope(k[:, :, T:T + N], cos, sin)
            if concept_rope is not None:
                at = slice(concept_rope, concept_rope + 1)
                q[:, :, T + N:], k[:, :, T + N:] = rope(q[:, :, T + N:], cos[at], sin[at]), rope(k[:, :, T + N:],
                                                                                               cos[at], sin[at])
        L = T + N
        mask = torch.zeros(L + C, L + C)
        mask[:L, L:] = -math.inf  # text and video never see the concepts
        mask[L:, :T] = -math.inf  # concepts see the video and themselves, not the prompt
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask, dim=-1)
        joint = (weights @ v).transpose(1, 2).reshape(batch, L + C, -1)
        o_t, o_x, o_c = joint[:, :T], joint[:, T:L], joint[:, L:]
        if i in blocks:
            saliency[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)
        # the block's own outputs (for the check that this is the model's forward), then the concept update
        img = img + m1[2] * linear(o_x, block.attn_out)
        txt = txt + m1[5] * linear(o_t, block.attn_out)
        img = img + m2[2] * feed_forward(block, affine_layer_norm(img, block.norm2.norm) * (1 + m2[1]) + m2[0])
        txt = txt + m2[5] * feed_forward(block, affine_layer_norm(txt, block.norm2.norm) * (1 + m2[4]) + m2[3])
        outputs[i] = (img, txt)
        c = c + c1[5] * linear(o_c, block.attn_out)
        c = c + c2[5] * feed_forward(block, affine_layer_norm(c, block.norm2.norm) * (1 + c2[4]) + c2[3])
    return saliency, outputs


def per_latent_frame(dm, saliency, x_shape):
    """[B, token frames * hw, C] -> [B, latent frames * hw, C]: latent frame t reads token frame t // patch_size_t
    (CogVideoX 1.5 patches two latent frames into one token frame)."""
    per_token = dm.patch_size_t or 1
    frames, hw = x_shape[2], saliency.shape[1] // math.ceil(x_shape[2] / per_token)
    tokens = saliency.reshape(saliency.shape[0], -1, hw, saliency.shape[-1])
    return torch.stack([tokens[:, t // per_token] for t in range(frames)], dim=1).flatten(1, 2)


def expected_maps(dm, calls, embeddings, blocks, **options):
    """Mean over recorded blocks and schedule steps (each once, cond rows only) as [B, C, frames, h, w]."""
    def per_call(call):
        saliency, _ = masked_forward(dm, call, embeddings, blocks, **options)
        return {b: per_latent_frame(dm, s, call["x_shape"]) for b, s in saliency.items()}
    return reference.expected_maps(calls, per_call, blocks, grid=grid(dm, calls[0]["x_shape"]))
