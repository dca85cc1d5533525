"""What the method needs from a model family: its concept stream, written with the model's own modules."""

from __future__ import annotations

import torch


class ModelAdapter:
    """One model family. Blocks are the joint (double-stream) blocks; text comes before image tokens."""

    family = ""
    patch_size = 2

    def __init__(self, diffusion_model):
        self.dm = diffusion_model

    @property
    def num_blocks(self) -> int:
        raise NotImplementedError

    def default_blocks(self) -> list[int]:
        raise NotImplementedError

    @property
    def text_width(self) -> int:
        """Width of the text-encoder features the model's text input path takes."""
        raise NotImplementedError

    def grid(self, latent_hw) -> tuple[int, int]:
        """Token grid of the generated image for a latent of this height and width."""
        p = self.patch_size
        return (latent_hw[0] + p - 1) // p, (latent_hw[1] + p - 1) // p

    def concept_vec(self, timesteps: torch.Tensor, guidance, dtype) -> torch.Tensor:
        """Modulation vector [B, D] of the concept stream: timestep (+ guidance), zero pooled text."""
        raise NotImplementedError

    def embed(self, embeddings: torch.Tensor, batch: int, dtype, device) -> torch.Tensor:
        """Concept embeddings [C, ctx] through the model's text input path, as [B, C, D]."""
        raise NotImplementedError

    def concept_qkv(self, index: int, c: torch.Tensor, vec: torch.Tensor, block_args: dict):
        """Concept queries, keys, values [B, H, C, Dh] from the block's text-stream weights, and the
        intermediates `concept_update` needs."""
        raise NotImplementedError

    def concept_update(self, index: int, c: torch.Tensor, o_c: torch.Tensor, intermediates) -> torch.Tensor:
        """Residual update of the concept stream with the block's text-stream output weights."""
        raise NotImplementedError
