"""An independent, plainly written re-derivation of ConceptAttention on OmniGen2 (SPEC.md section 3): a MASKED
FORWARD of the main layers over [text; reference images; image; concepts].

From the inputs each main layer received in a real sampling run (recorded with forward pre-hooks), every layer is
recomputed on [prompt tokens; reference-image tokens; image tokens; concept tokens] with explicit math read from
the weights (modulated RMS norms, q/k/v, QK-norm, RoPE from the positions, grouped-query heads, an explicit
masked softmax, output projection, post-norms and tanh gates, gated feed-forward), under the concept mask:
- prompt, reference and image queries see the prompt, reference and image keys (never a concept);
- concept queries see the generated image's keys and the concept keys (never the prompt's or a reference's).
Concept rows enter through the caption embedder and the context refiner alone (one concept at a time) with the
timestep's modulation and sit at the text position of their first word token. Saliency at a layer is the
softmax over concepts of (image rows) x (concept rows)^T of the attention output before the output projection.
Shares no code with the pack.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reference import linear
from reference_krea2 import rotate_pairs, rotation_tables


class OmniGen2LayerInputs:
    """Forward pre-hooks recording each model call and each main layer's inputs, as `reference.expected_maps`
    reads them."""

    def __init__(self, dm):
        self.calls = []
        self.handles = [dm.register_forward_pre_hook(self._on_model, with_kwargs=True)]
        for i, layer in enumerate(dm.layers):
            self.handles.append(layer.register_forward_pre_hook(self._on_layer(i)))

    def _on_model(self, module, args, kwargs):
        options = kwargs.get("transformer_options", {})
        refs = kwargs.get("ref_latents") or []
        self.calls.append({"t": args[1].clone(), "x_hw": args[0].shape[-2:], "text_tokens": kwargs["context"].shape[1],
                           "num_tokens": kwargs["num_tokens"], "reference_hw": [ref.shape[-2:] for ref in refs],
                           "cond_or_uncond": list(options.get("cond_or_uncond", [0])),
                           "sigmas": options.get("sigmas"), "sample_sigmas": options.get("sample_sigmas"),
                           "layers": {}})

    def _on_layer(self, i):
        def hook(module, args):
            self.calls[-1]["layers"][i] = {"x": args[0].clone(), "temb": args[3].clone()}
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def rms(x, norm):
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + norm.eps) * norm.weight.float()


def time_vector(dm, t):
    """[B, D']: the layers' modulation input, from the timestep alone (flipped: 1 - t)."""
    embed = dm.time_caption_embed
    half = embed.time_proj.num_channels // 2
    freq = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angle = (1.0 - t.float())[:, None] * freq[None]
    emb = torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)  # cosines first
    return linear(F.silu(linear(emb, embed.timestep_embedder.linear_1)), embed.timestep_embedder.linear_2)


def split_heads(x, n):
    return x.reshape(x.shape[0], x.shape[1], n, -1).transpose(1, 2)


def attention(layer, h, cos=None, sin=None, allowed=None):
    """The layer's attention on normed input h [B, L, D]: (output before the projection, projected output)."""
    attn = layer.attn
    q, k, v = (split_heads(linear(h, proj), n) for proj, n in
               ((attn.to_q, attn.heads), (attn.to_k, attn.kv_heads), (attn.to_v, attn.kv_heads)))
    q, k = rms(q, attn.norm_q), rms(k, attn.norm_k)
    if cos is not None:
        q, k = rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)
    group = attn.heads // attn.kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    o = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(h.shape[0], h.shape[1], -1)
    return o, linear(o, attn.to_out[0])


def feed_forward(ff, h):
    return linear(F.silu(linear(h, ff.linear_1)) * linear(h, ff.linear_3), ff.linear_2)


def concept_tokens(dm, embeddings):
    """[C, D]: each concept a one-token prompt through the caption embedder and the (unmodulated) context
    refiner; attention over one token is that token's value, whatever its rotation."""
    norm, proj = dm.time_caption_embed.caption_embedder
    x = linear(rms(embeddings.float(), norm), proj)[:, None]
    for layer in dm.context_refiner:
        x = x + rms(attention(layer, rms(x, layer.norm1))[1], layer.norm2)
        x = x + rms(feed_forward(layer.feed_forward, rms(x, layer.ffn_norm1)), layer.ffn_norm2)
    return x[:, 0]


def grid_ids(h, w, first_axis):
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([torch.full((h * w,), first_axis), rows.reshape(-1), cols.reshape(-1)], dim=1)


def layer_forward(layer, seq, temb, cos, sin, allowed):
    """One main layer on seq [B, L, D] with per-row modulation input temb [B, L, D']."""
    scale_msa, gate_msa, scale_mlp, gate_mlp = linear(F.silu(temb), layer.norm1.linear).chunk(4, dim=-1)
    o, out = attention(layer, rms(seq, layer.norm1.norm) * (1 + scale_msa), cos, sin, allowed)
    seq = seq + torch.tanh(gate_msa) * rms(out, layer.norm2)
    ff = feed_forward(layer.feed_forward, rms(seq, layer.ffn_norm1) * (1 + scale_mlp))
    return o, seq + torch.tanh(gate_mlp) * rms(ff, layer.ffn_norm2)


def masked_forward(dm, call, embeddings, last_layer, concept_position):
    """Main layers 0..last_layer of one model call on [text; references; image; concepts]: (o, output) per layer."""
    batch, T, p = call["t"].shape[0], call["text_tokens"], dm.patch_size
    n_text = call["num_tokens"]
    ids = [torch.arange(T)[:, None].expand(T, 3) * (torch.arange(T)[:, None] < n_text)]  # prompt token i at (i, i, i)
    shift = n_text  # references, then the image, each a grid at the next first-axis position
    for rh, rw in call["reference_hw"]:
        ids.append(grid_ids((rh + p - 1) // p, (rw + p - 1) // p, shift))
        shift += max((rh + p - 1) // p, (rw + p - 1) // p)
    h, w = ((call["x_hw"][0] + p - 1) // p, (call["x_hw"][1] + p - 1) // p)
    ids.append(grid_ids(h, w, shift))
    C = embeddings.shape[0]
    ids.append(torch.tensor(concept_position).expand(C, 3))
    positions = torch.cat(ids)
    L = positions.shape[0]
    cos, sin = rotation_tables(positions, dm.rope_embedder.axes_dim, dm.rope_embedder.theta)
    image = slice(L - C - h * w, L - C)
    allowed = torch.ones(L, L, dtype=torch.bool)
    allowed[:L - C, L - C:] = False          # nothing else sees a concept
    allowed[L - C:, :image.start] = False    # concepts see neither the prompt nor a reference
    c = concept_tokens(dm, embeddings)[None].expand(batch, C, -1)
    cvec = time_vector(dm, call["t"])[:, None]
    results = []
    for i in range(last_layer + 1):
        recorded = call["layers"][i]
        seq = torch.cat([recorded["x"].float(), c], dim=1)
        temb = torch.cat([recorded["temb"].float()[:, None].expand(-1, L - C, -1), cvec.expand(-1, C, -1)], dim=1)
        o, out = layer_forward(dm.layers[i], seq, temb, cos, sin, allowed)
        results.append((o, out))
        c = out[:, L - C:]
    return results, image


def omnigen2_reference(dm, call, embeddings, layers, concept_position):
    """Saliency per recorded layer for one model call: {layer: [B, N, C]} over all rows."""
    C = embeddings.shape[0]
    results, image = masked_forward(dm, call, embeddings, max(layers), concept_position)
    return {i: torch.softmax(o[:, image] @ o[:, o.shape[1] - C:].transpose(1, 2), dim=-1)
            for i, (o, _) in enumerate(results) if i in layers}
