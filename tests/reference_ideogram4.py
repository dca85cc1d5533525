"""An independent, plainly written re-derivation of ConceptAttention on Ideogram 4 (SPEC.md section 3): a MASKED
FORWARD of the single-stream layers over [text; image; concepts].

From the inputs each layer received in a real sampling run (recorded with forward pre-hooks), every layer is
recomputed on [prompt tokens; image tokens; concept tokens] with explicit math read from the weights (RMS norms,
scales and tanh gates, qkv, QK-norm, interleaved MRoPE from the positions, an explicit masked softmax, output
projection, gated feed-forward), under the concept mask:
- prompt and image queries see what the model lets them see (its padding segments), never a concept;
- concept queries see the image keys and the concept keys (never the prompt's, never padding).
Concept rows enter through the text input path with the timestep's modulation and sit at the text position of
their first word token. Saliency at a layer is the softmax over concepts of (image rows) x (concept rows)^T of
the attention output before the output projection. Shares no code with the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reference import linear

IMAGE_OFFSET = 65536  # Ideogram 4 puts image positions past any text position


class Ideogram4LayerInputs:
    """Forward pre-hooks recording each model call and each layer's inputs, as `reference.expected_maps` reads."""

    def __init__(self, dm):
        self.calls = []
        self.handles = [dm.register_forward_pre_hook(self._on_model, with_kwargs=True)]
        for i, layer in enumerate(dm.layers):
            self.handles.append(layer.register_forward_pre_hook(self._on_layer(i)))

    def _on_model(self, module, args, kwargs):
        options = kwargs.get("transformer_options", {})
        self.calls.append({"t": args[1].clone(), "x_hw": args[0].shape[-2:], "text_tokens": kwargs["context"].shape[1],
                           "cond_or_uncond": list(options.get("cond_or_uncond", [0])),
                           "sigmas": options.get("sigmas"), "sample_sigmas": options.get("sample_sigmas"),
                           "layers": {}})

    def _on_layer(self, i):
        def hook(module, args):
            x, mask, _, adaln = args[:4]
            self.calls[-1]["layers"][i] = {"x": x.clone(), "mask": None if mask is None else mask.clone(),
                                           "adaln": adaln.clone()}
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def rms(x, norm):
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + norm.eps) * norm.weight.float()


def time_vector(dm, t):
    """[B, 1, adaln_dim]: the layers' modulation input, from the timestep alone (flipped: 1 - t)."""
    emb_dim = dm.t_embedding.dim
    half = emb_dim // 2
    freq = torch.exp(-torch.arange(half, dtype=torch.float32) * math.log(1e4) / (half - 1))
    angle = 1e4 * (1.0 - t.float())[:, None] * freq[None]
    emb = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
    t_cond = linear(F.silu(linear(emb, dm.t_embedding.mlp_in)), dm.t_embedding.mlp_out)
    return F.silu(linear(t_cond, dm.adaln_proj))[:, None]


def concept_tokens(dm, embeddings):
    """[C, hidden]: the text input path of a prompt token (norm, projection, the text rows' indicator row)."""
    text_row = dm.embed_image_indicator.weight[0].float()
    return linear(rms(embeddings.float(), dm.llm_cond_norm), dm.llm_cond_proj) + text_row


def rotation(positions, head_dim, theta, sections):
    """cos, sin [L, Dh/2] of Qwen3-VL's interleaved MRoPE: frequency j = theta^(-2j/Dh) turns with the first axis,
    except j = 1, 4, 7, ... below 3 * sections[1] (second axis) and j = 2, 5, 8, ... below 3 * sections[2]
    (third axis)."""
    j = torch.arange(head_dim // 2)
    axis = torch.zeros_like(j)
    axis[(j % 3 == 1) & (j < 3 * sections[1])] = 1
    axis[(j % 3 == 2) & (j < 3 * sections[2])] = 2
    freq = 1.0 / theta ** (2 * j.float() / head_dim)
    angles = positions.float()[:, axis] * freq[None]
    return torch.cos(angles), torch.sin(angles)


def rotate_halves(x, cos, sin):
    """Rotate the pairs (x[j], x[j + Dh/2]) of x [B, H, L, Dh] by the angles of cos/sin [L, Dh/2]."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


def masked_attention(q, k, v, allowed):
    """[B, H, L, Dh] with an explicit softmax over the keys each query may see (allowed [B, L, L])."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    weights = torch.softmax(scores.masked_fill(~allowed[:, None], float("-inf")), dim=-1)
    out = weights @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def layer_forward(layer, seq, adaln, cos, sin, allowed):
    """One layer on seq [B, L, D] with per-row modulation input adaln [B, L, adaln_dim]: (o before the output
    projection, the layer's output)."""
    scale_msa, gate_msa, scale_mlp, gate_mlp = linear(adaln, layer.adaln_modulation).chunk(4, dim=-1)
    attn = layer.attention
    h = rms(seq, layer.attention_norm1) * (1 + scale_msa)
    q, k, v = (t.reshape(seq.shape[0], seq.shape[1], attn.num_heads, -1).transpose(1, 2)
               for t in linear(h, attn.qkv).chunk(3, dim=-1))
    q, k = rms(q, attn.norm_q), rms(k, attn.norm_k)
    q, k = rotate_halves(q, cos, sin), rotate_halves(k, cos, sin)
    o = masked_attention(q, k, v, allowed)
    seq = seq + torch.tanh(gate_msa) * rms(linear(o, attn.o), layer.attention_norm2)
    ff = layer.feed_forward
    h = rms(seq, layer.ffn_norm1) * (1 + scale_mlp)
    return o, seq + torch.tanh(gate_mlp) * rms(linear(F.silu(linear(h, ff.w1)) * linear(h, ff.w3), ff.w2),
                                               layer.ffn_norm2)


def masked_forward(dm, call, embeddings, last_layer, concept_positions):
    """Layers 0..last_layer of one model call on [text; image; concepts]: a list of (o, output) per layer; rows
    text (T), image (N), concepts (C). concept_positions: one text position per concept."""
    batch, T = call["t"].shape[0], call["text_tokens"]
    h, w = call["x_hw"]
    N, C = h * w, embeddings.shape[0]
    grid = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), dim=-1).reshape(N, 2)
    positions = torch.cat([torch.arange(T)[:, None].expand(T, 3),                       # prompt token i at (i, i, i)
                           IMAGE_OFFSET + torch.cat([torch.zeros(N, 1, dtype=torch.long), grid], dim=1),
                           torch.tensor(concept_positions)[:, None].expand(C, 3)])
    cos, sin = rotation(positions, dm.head_dim, dm.rope_theta, dm.mrope_section)
    is_concept = torch.arange(T + N + C) >= T + N
    is_text = torch.arange(T + N + C) < T
    recorded_mask = call["layers"][0]["mask"]
    allowed = torch.zeros(batch, T + N + C, T + N + C, dtype=torch.bool)
    # prompt/image queries: what the model allows them (padding segments), never a concept
    allowed[:, :T + N, :T + N] = True if recorded_mask is None else recorded_mask[:, 0] == 0
    allowed[:, T + N:, T:] = True  # concept queries: image and concept keys, never the prompt's
    c = concept_tokens(dm, embeddings)[None].expand(batch, C, -1)
    cvec = time_vector(dm, call["t"])
    results = []
    for i in range(last_layer + 1):
        recorded = call["layers"][i]
        seq = torch.cat([recorded["x"].float(), c], dim=1)
        adaln = torch.cat([recorded["adaln"].float().expand(-1, T + N, -1), cvec.expand(-1, C, -1)], dim=1)
        o, out = layer_forward(dm.layers[i], seq, adaln, cos, sin, allowed)
        results.append((o, out))
        c = out[:, T + N:]
    return results


def ideogram4_reference(dm, call, embeddings, layers, concept_positions):
    """Saliency per recorded layer for one model call: {layer: [B, N, C]} over all rows."""
    T, C = call["text_tokens"], embeddings.shape[0]
    out = {}
    for i, (o, _) in enumerate(masked_forward(dm, call, embeddings, max(layers), concept_positions)):
        if i in layers:
            o_x, o_c = o[:, T:o.shape[1] - C], o[:, o.shape[1] - C:]
            out[i] = torch.softmax(o_x @ o_c.transpose(1, 2), dim=-1)
    return out
