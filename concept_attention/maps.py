"""Pure tensor math of the method: concept attention, concept scores, accumulation. No ComfyUI imports.

Shapes: B batch rows, H heads, N image tokens, C concepts, Dh head dim, HD = H * Dh.

Working memory: the block's image keys, values and outputs are read where they lie, a chunk of CHUNK_TOKENS
tokens at a time in fp32, so no fp32 or concatenated copy of them is made (a video's N runs into the hundred
thousands: such a copy would be a sizeable fraction of the run's own peak). What grows with N is O(B*H*C*N).
"""

from __future__ import annotations

import torch

SPACES = ("output", "cross_attention", "value")  # the method, then the paper's ablation baselines
AUTO_SPACE = "auto"  # the model's own first space: "output" where the model has it, else its baseline
NODE_SPACES = (AUTO_SPACE, "output", "cross_attention")
CHUNK_TOKENS = 4096  # image tokens read at a time in fp32 (one chunk for a 1024x1024 Flux image)


def concept_attention(q_c, k_c, v_c, k_x, v_x, scale: float | None = None) -> torch.Tensor:
    """o_c = softmax(q_c [k_x; k_c]^T * scale) [v_x; v_c] per head, concept queries only, in fp32.

    All inputs are [B, H, L, Dh]; returns [B, C, HD] (fp32). The image keys and values are the block's own,
    read in chunks: the attention weights over all N + C keys [B, H, C, N + C] (fp32, softmax taken in place)
    are the only tensor that grows with N.
    `scale` defaults to 1/sqrt(Dh), as in the block's own attention.
    """
    scale = q_c.shape[-1] ** -0.5 if scale is None else scale
    q = q_c.float() * scale
    n = k_x.shape[2]
    weights = torch.empty(*q.shape[:3], n + k_c.shape[2], device=q.device)
    for start, k in zip(range(0, n, CHUNK_TOKENS), k_x.split(CHUNK_TOKENS, dim=2)):
        weights[..., start:start + k.shape[2]] = q @ k.float().transpose(-1, -2)
    weights[..., n:] = q @ k_c.float().transpose(-1, -2)
    weights -= weights.amax(dim=-1, keepdim=True)  # the softmax over all keys, in place
    weights.exp_()
    weights /= weights.sum(dim=-1, keepdim=True)
    out = weights[..., n:] @ v_c.float()
    for start, v in zip(range(0, n, CHUNK_TOKENS), v_x.split(CHUNK_TOKENS, dim=2)):
        out += weights[..., start:start + v.shape[2]] @ v.float()
    return out.transpose(1, 2).flatten(2)


def scores(space: str, *, o_x=None, o_c=None, q_x=None, k_c=None, v_x=None, v_c=None) -> torch.Tensor:
    """Raw per-token concept scores [B, N, C] in fp32 (before any softmax over concepts).

    "output": o_x o_c^T over the concatenated heads (o_x [B, N, HD], o_c [B, C, HD]).
    "cross_attention": q_x k_c^T / sqrt(Dh) summed over heads (q_x [B, H, N, Dh], k_c [B, H, C, Dh]).
    "value": v_x v_c^T summed over heads (v_x [B, H, N, Dh], v_c [B, H, C, Dh]).
    """
    if space == "output":
        o_c = o_c.float().transpose(1, 2)
        return torch.cat([x.float() @ o_c for x in o_x.split(CHUNK_TOKENS, dim=1)], dim=1)
    if space == "cross_attention":
        return _per_head_products(q_x, k_c) * q_x.shape[-1] ** -0.5
    if space == "value":
        return _per_head_products(v_x, v_c)
    raise ValueError(f"unknown space {space!r}; expected one of {SPACES}")


def _per_head_products(x, c) -> torch.Tensor:
    """sum over heads of x c^T: x [B, H, N, Dh], c [B, H, C, Dh] -> [B, N, C] fp32, chunked over N."""
    c = c.float()
    return torch.cat([torch.einsum("bhnd,bhcd->bnc", part.float(), c) for part in x.split(CHUNK_TOKENS, dim=2)],
                     dim=1)


class MapRule:
    """How per-(block, step) scores become a map.

    temperature None (the paper's rule for Flux.1 and SD3): softmax over concepts at every block and step, then
    the mean. A temperature T (the authors' rule for Flux.2, T = 1000): the mean of the raw scores, then one
    softmax over concepts of mean / T. softmax=False keeps the mean of the raw scores (an ablation).
    """

    def __init__(self, softmax: bool = True, temperature: float | None = None):
        self.softmax = softmax
        self.temperature = temperature

    def contribution(self, logits: torch.Tensor) -> torch.Tensor:
        if self.softmax and self.temperature is None:
            return logits.softmax(dim=-1)
        return logits

    def finish(self, mean: torch.Tensor) -> torch.Tensor:
        if self.softmax and self.temperature is not None:
            return (mean / self.temperature).softmax(dim=-1)
        return mean


class MapAccumulator:
    """Running sum of (block, step) contributions. O(B*N*C) fp32 memory, nothing per layer or step."""

    def __init__(self, rule: MapRule | None = None):
        self.rule = rule or MapRule()
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, logits: torch.Tensor) -> None:
        """Add one contribution: raw scores [B, N, C] of every batch row of the latent."""
        contribution = self.rule.contribution(logits.float())
        if self.total is None:
            self.total = torch.zeros_like(contribution, dtype=torch.float32)
        elif self.total.shape != contribution.shape:
            raise RuntimeError(f"scores of shape {tuple(contribution.shape)} cannot join a run of shape "
                               f"{tuple(self.total.shape)}")
        self.total += contribution
        self.count += 1

    def mean(self, grid: tuple[int, ...]) -> torch.Tensor:
        """Map [B, C, *grid] on the token grid (h, w) or (frames, h, w), on the CPU."""
        maps = self.rule.finish(self.total / self.count)
        return maps.transpose(1, 2).reshape(maps.shape[0], maps.shape[2], *grid).cpu()
