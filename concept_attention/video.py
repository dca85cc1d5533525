"""Video maps: from latent frames to decoded frames, and a video's masks and previews. Pure tensor code, no
ComfyUI imports.

A video family's maps are [B, C, T, h, w] on the token grid: B videos, C concepts, T latent frames. ComfyUI's
video VAEs are causal in time: latent frame 0 decodes to one frame of its own, and every later latent frame to
`compression` frames (comfy.sd.VAE: `upscale_ratio[0]` is `T -> 1 + compression * (T - 1)`; its encoder makes
`(F + compression - 1) // compression` latent frames of F frames, dropping an incomplete last group). The
compression is the model's `latent_format.temporal_downscale_ratio` (HunyuanVideo, Wan, CogVideoX: 4; Mochi: 6;
LTX-Video: 8); a family declares it through `ModelAdapter.frame_layout()`. A video's map of a decoded frame is
the map of the latent frame it decodes from (maps are not blended across latent frames).

Order of the outputs (what ComfyUI's video nodes and per-frame compositing take directly; F = decoded frames
of one video):
- masks [B*C*F, H, W]: video 0's concept 0 over all its frames, then concept 1's frames, ..., then video 1.
  Each concept's masks are one clip, in the order of the decoded frames (VAE Decode's IMAGE batch).
- heatmaps [B*C*F, H, W, 3]: one heat image per mask, same order; each concept's clip stretched to its own
  range (one range over all of its frames, so brightness compares across frames).
- segmentation [B*F, H, W, 3]: the decoded frames' order.
- Concept Mask (one concept) [B*F, H, W]: that concept's clip of each video, in the decoded frames' order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import ConceptAttentionError
from .masks import heatmaps, segmentation, shape_mask, to_image_size


def decoded_frames(latent_frames: int, compression: int) -> int:
    """Frames a causal video VAE decodes `latent_frames` latent frames to: the first alone, then `compression`
    each."""
    return 1 + compression * (latent_frames - 1)


@dataclass(frozen=True)
class FrameLayout:
    """How the latent frames of a video's maps become its decoded frames.

    compression: decoded frames per latent frame after the first (the VAE's temporal compression).
    count: decoded frames per video; None: all that the latent frames decode to. An input video that the VAE
    encoded may have a few frames more (the encoder drops a last incomplete group): they take the last latent
    frame's map.
    """

    compression: int
    count: int | None = None

    def frames(self, latent_frames: int) -> int:
        return decoded_frames(latent_frames, self.compression) if self.count is None else self.count

    def with_count(self, count: int) -> "FrameLayout":
        return FrameLayout(self.compression, count)

    def sources(self, latent_frames: int) -> torch.Tensor:
        """The latent frame of each decoded frame, [F] (long): frame 0 from latent frame 0, frames
        (t-1)*k+1 .. t*k from latent frame t."""
        k = self.compression
        return ((torch.arange(self.frames(latent_frames)) + k - 1) // k).clamp(max=latent_frames - 1)

    def at_image_size(self, maps: torch.Tensor, size: tuple[int, int], cell: int) -> torch.Tensor:
        """Maps [B, C, T, h, w] as [B, C, F, H, W] at the decoded frames' resolution (still summing to 1 over
        concepts). Frames are expanded on the token grid, before upsampling."""
        b, c, t = maps.shape[:3]
        frames = maps.index_select(2, self.sources(t))
        up = to_image_size(frames.flatten(1, 2), size, cell)
        return up.reshape(b, c, frames.shape[2], *size)

    def mask(self, maps: torch.Tensor, index: int, mode: str, threshold: float, size: tuple[int, int],
             cell: int) -> torch.Tensor:
        """One concept's masks [B*F, H, W] (each video's frames in order). Shaped per latent frame, then
        expanded: every mode works frame by frame, so this equals shaping the decoded frames' maps."""
        b, c, t = maps.shape[:3]
        per_latent = to_image_size(maps.flatten(1, 2), size, cell).reshape(b, c, t, *size)
        shaped = shape_mask(per_latent, index, mode, threshold)  # [B, T, H, W]
        return shaped.index_select(1, self.sources(t)).flatten(0, 1)


def masks_output(maps: torch.Tensor) -> torch.Tensor:
    """The MASK batch [B*C*F, H, W] of maps [B, C, F, H, W] at image size (a view: video, concept, frame)."""
    return maps.reshape(-1, *maps.shape[-2:])


def previews(maps: torch.Tensor, image: torch.Tensor | None = None, heat_strips: torch.Tensor | None = None,
             seg_strip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(heatmaps [B*C*F, H', W, 3], segmentation [B*F, H', W, 3]) of maps [B, C, F, H, W] at image size, drawn
    over the decoded frames `image` [B*F, H, W, 3] when given. Optional strips go below every frame (H' = H +
    their height): heat_strips [C, h, W, 3] one per concept, seg_strip [h, W, 3] (the captions and legend).

    Each video's clip is laid out as one tall image (its frames stacked), so the image code colours it in one
    go: one heat range per concept and clip, no copies of the maps. Heatmaps are made one concept at a time, into
    the output, to keep the working memory to one concept's clips."""
    b, c, f, h, w = maps.shape
    overlay = None if image is None else overlay_frames(image, b, f, (h, w)).reshape(b, f * h, w, 3)
    tall = maps.reshape(b, c, f * h, w)
    below = 0 if heat_strips is None else heat_strips.shape[1]
    heat = torch.empty(b, c, f, h + below, w, 3)
    for i in range(c):
        heat[:, i, :, :h] = heatmaps(tall[:, i:i + 1], overlay).reshape(b, f, h, w, 3)
        if heat_strips is not None:
            heat[:, i, :, h:] = heat_strips[i]
    seg = segmentation(tall, overlay).reshape(b, f, h, w, 3)
    if seg_strip is not None:
        seg = torch.cat([seg, seg_strip.expand(b, f, -1, -1, -1)], dim=2)
    return heat.reshape(b * c * f, h + below, w, 3), seg.reshape(b * f, -1, w, 3)


def overlay_frames(image: torch.Tensor, videos: int, frames: int, size: tuple[int, int]) -> torch.Tensor:
    """The decoded frames to draw over, [videos*frames, H, W, 3] at the maps' size; a clear error when the
    IMAGE batch is not the decoded frames of these videos."""
    if image.shape[0] != videos * frames:
        raise ConceptAttentionError(
            f"The image input has {image.shape[0]} frames, but these maps are of {videos} video(s) of {frames} "
            f"decoded frames each ({videos * frames} frames). Wire the VAE Decode output of the same LATENT, or "
            f"leave image empty.")
    pixels = image[..., :3].float()
    if tuple(pixels.shape[1:3]) != tuple(size):
        pixels = F.interpolate(pixels.movedim(-1, 1), size=size, mode="bilinear", align_corners=False).movedim(1, -1)
    return pixels
