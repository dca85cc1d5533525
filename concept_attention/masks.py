"""Turning token-grid maps into masks and preview images. Pure tensor code, no ComfyUI imports.

Maps are [B, C, h, w] (softmax over C). Masks are [B, H, W] in 0..1, images [B, H, W, 3] in 0..1,
as ComfyUI's MASK and IMAGE types expect. Video maps [B, C, T, h, w] carry a `video.FrameLayout` that brings
them to decoded frames (concept_attention/video.py: frame expansion, the outputs' order).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .errors import ConceptAttentionError

if TYPE_CHECKING:
    from .video import FrameLayout

MASK_MODES = ("soft", "argmax", "mean_threshold", "value_threshold")

# Distinct, colour-blind-friendly colours for the first ten concepts of the segmentation preview; `palette`
# extends them for longer lists.
PALETTE = torch.tensor([
    [0.90, 0.62, 0.00], [0.34, 0.71, 0.91], [0.00, 0.62, 0.45], [0.94, 0.89, 0.26], [0.00, 0.45, 0.70],
    [0.84, 0.37, 0.00], [0.80, 0.47, 0.65], [0.60, 0.60, 0.60], [0.55, 0.34, 0.16], [0.20, 0.20, 0.55],
])
_LEVELS = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
_CANDIDATES = torch.cartesian_prod(_LEVELS, _LEVELS, _LEVELS)  # where further colours are picked from
# Anchors of a perceptually ordered heat colour map (dark blue -> teal -> yellow).
_HEAT = torch.tensor([
    [0.27, 0.00, 0.33], [0.23, 0.32, 0.55], [0.13, 0.57, 0.55], [0.37, 0.79, 0.38], [0.99, 0.91, 0.14],
])


@dataclass(frozen=True)
class ConceptMaps:
    """Soft maps of one run on the token grid, with what is needed to bring them to the image."""

    names: tuple[str, ...]
    maps: torch.Tensor            # [B, C, h, w] (video: [B, C, T, h, w]) float32, softmax over C
    image_size: tuple[int, int]   # (H, W) pixels of the decoded image (video: of each decoded frame)
    pixels_per_token: int
    frames: FrameLayout | None = None  # video only: how latent frames become decoded frames (video.py)

    def at_image_size(self) -> torch.Tensor:
        """[B, C, H, W] maps at image resolution (still summing to 1 over concepts); video: [B, C, F, H, W]
        over the decoded frames."""
        if self.frames is not None:
            return self.frames.at_image_size(self.maps, self.image_size, self.pixels_per_token)
        return to_image_size(self.maps, self.image_size, self.pixels_per_token)

    def with_image_size(self, size: tuple[int, int], frames: int | None = None) -> "ConceptMaps":
        """The same maps laid on images of `size` (H, W); a video's also on `frames` decoded frames per video
        (None: all that its latent frames decode to). `frames` is ignored for images."""
        layout = self.frames if self.frames is None or frames is None else self.frames.with_count(frames)
        return replace(self, image_size=size, frames=layout)

    def index(self, name: str) -> int:
        wanted = name.strip().lower()
        for i, n in enumerate(self.names):
            if n.lower() == wanted:
                return i
        raise ConceptAttentionError(
            f"Concept {name!r} is not in this concept list. The concepts are: {', '.join(self.names)}.")

    def mask(self, name: str, mode: str = "soft", threshold: float = 0.5) -> torch.Tensor:
        """One concept's mask [B, H, W] at image resolution; video: [B*F, H, W], each video's frames in order."""
        if self.frames is not None:
            return self.frames.mask(self.maps, self.index(name), mode, threshold, self.image_size,
                                    self.pixels_per_token)
        return shape_mask(self.at_image_size(), self.index(name), mode, threshold)


def to_image_size(maps: torch.Tensor, size: tuple[int, int], cell: int) -> torch.Tensor:
    """Bilinear upsampling of token-grid maps to pixels, `cell` pixels per token, laid on an image of
    `size`: cropped where the grid overhangs it, edge pixels repeated where the image is a little larger
    (VAEs drop the last rows and columns of images whose size is not a multiple of their scale)."""
    h, w = maps.shape[-2:]
    up = F.interpolate(maps.float(), size=(h * cell, w * cell), mode="bilinear", align_corners=False)
    up = up[..., : size[0], : size[1]]
    pad_h, pad_w = size[0] - up.shape[-2], size[1] - up.shape[-1]
    if pad_h or pad_w:
        up = F.pad(up, (0, pad_w, 0, pad_h), mode="replicate")
    return up.contiguous()


def shape_mask(maps: torch.Tensor, index: int, mode: str, threshold: float = 0.5) -> torch.Tensor:
    """One concept's mask [B, H, W] from maps [B, C, H, W]."""
    soft = maps[:, index]
    if mode == "soft":
        return soft.clone()
    if mode == "argmax":
        return (maps.argmax(dim=1) == index).float()
    if mode == "mean_threshold":
        return (soft > soft.mean(dim=(-2, -1), keepdim=True)).float()
    if mode == "value_threshold":
        return (soft > threshold).float()
    raise ConceptAttentionError(f"Mask mode {mode!r} is not known; choose one of {', '.join(MASK_MODES)}.")


def heatmaps(maps: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
    """One heat image per (row, concept), [B*C, H, W, 3], each map stretched to its own range."""
    b, c = maps.shape[:2]
    flat = maps.reshape(b * c, -1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    norm = ((flat - lo) / (hi - lo).clamp(min=1e-8)).reshape(b * c, *maps.shape[2:])
    colored = _colormap(norm)
    if image is not None:
        colored = 0.55 * colored + 0.45 * _match(image, maps).repeat_interleave(c, dim=0)
    return colored.clamp(0, 1)


def palette(count: int) -> torch.Tensor:
    """The first `count` colours [count, 3] of one fixed sequence: PALETTE, then, one at a time, the
    candidate colour farthest from every colour already chosen (so long lists keep distinct colours)."""
    chosen = PALETTE[:count]
    while len(chosen) < count:
        farthest = torch.cdist(_CANDIDATES, chosen).min(dim=1).values.argmax()
        chosen = torch.cat([chosen, _CANDIDATES[farthest][None]])
    return chosen


def segmentation(maps: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
    """Each pixel coloured by its strongest concept (colours: `palette`), [B, H, W, 3]."""
    colors = palette(maps.shape[1])[maps.argmax(dim=1)]
    if image is not None:
        colors = 0.5 * colors + 0.5 * _match(image, maps)
    return colors.clamp(0, 1)


def _colormap(x: torch.Tensor) -> torch.Tensor:
    pos = x.clamp(0, 1) * (len(_HEAT) - 1)
    lo = pos.floor().long().clamp(max=len(_HEAT) - 2)
    frac = (pos - lo).unsqueeze(-1)
    return _HEAT[lo] * (1 - frac) + _HEAT[lo + 1] * frac


def _match(image: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """The overlay image resized to the maps' pixel size, with one image per batch row."""
    size = maps.shape[-2:]
    img = image[..., :3].float()
    if img.shape[1:3] != size:
        img = F.interpolate(img.movedim(-1, 1), size=size, mode="bilinear", align_corners=False).movedim(1, -1)
    if img.shape[0] != maps.shape[0]:
        img = img[:1].expand(maps.shape[0], -1, -1, -1)
    return img
