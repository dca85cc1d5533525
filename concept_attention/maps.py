"""Pure tensor math of the method: concept attention, saliency, accumulation. No ComfyUI imports.

Shapes: B batch rows, H heads, N image tokens, C concepts, Dh head dim, HD = H * Dh.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SPACES = ("output", "cross_attention", "value")  # the method, then the paper's ablation baselines
NODE_SPACES = ("output", "cross_attention")


def concept_attention(q_c, k_c, v_c, k_x, v_x) -> torch.Tensor:
    """o_c = softmax(q_c [k_x; k_c]^T / sqrt(Dh)) [v_x; v_c] per head, concept queries only.

    All inputs are [B, H, L, Dh]; returns [B, C, HD]. The image keys and values are the block's own.
    """
    keys = torch.cat((k_x, k_c), dim=2)
    values = torch.cat((v_x, v_c), dim=2)
    out = F.scaled_dot_product_attention(q_c, keys, values)
    return out.transpose(1, 2).flatten(2)


def saliency(space: str, *, o_x=None, o_c=None, q_x=None, k_c=None, v_x=None, v_c=None,
             softmax: bool = True) -> torch.Tensor:
    """Per-token concept saliency [B, N, C] in fp32, softmax over concepts (raw scores if not `softmax`).

    "output": o_x o_c^T over the concatenated heads (o_x [B, N, HD], o_c [B, C, HD]).
    "cross_attention": q_x k_c^T / sqrt(Dh) summed over heads (q_x [B, H, N, Dh], k_c [B, H, C, Dh]).
    "value": v_x v_c^T summed over heads (v_x [B, H, N, Dh], v_c [B, H, C, Dh]).
    """
    if space == "output":
        logits = torch.matmul(o_x.float(), o_c.float().transpose(1, 2))
    elif space == "cross_attention":
        logits = torch.einsum("bhnd,bhcd->bnc", q_x.float(), k_c.float()) * q_x.shape[-1] ** -0.5
    elif space == "value":
        logits = torch.einsum("bhnd,bhcd->bnc", v_x.float(), v_c.float())
    else:
        raise ValueError(f"unknown space {space!r}; expected one of {SPACES}")
    return logits.softmax(dim=-1) if softmax else logits


class MapAccumulator:
    """Running sum of saliency over (block, step) contributions. O(B*N*C) fp32 memory, nothing per layer."""

    def __init__(self):
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, scores: torch.Tensor) -> None:
        """Add one contribution [B, N, C] (every batch row of the latent)."""
        if self.total is None:
            self.total = torch.zeros_like(scores, dtype=torch.float32)
        elif self.total.shape != scores.shape:
            raise RuntimeError(f"saliency of shape {tuple(scores.shape)} cannot join a run of shape "
                               f"{tuple(self.total.shape)}")
        self.total += scores
        self.count += 1

    def mean(self, grid: tuple[int, int]) -> torch.Tensor:
        """Mean map [B, C, h, w] on the token grid, on the CPU."""
        maps = self.total / self.count
        return maps.transpose(1, 2).reshape(maps.shape[0], maps.shape[2], *grid).cpu()
