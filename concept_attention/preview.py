"""The node's preview images with their words drawn in: the segmentation with a legend (each concept's colour
and name) and every heatmap with its concept's name.

Both are ComfyUI IMAGE tensors [N, H, W, 3] in 0..1. The words go on a dark strip added below each image,
so no pixel of the preview is covered. Text is drawn with PIL's built-in font (PIL ships with ComfyUI).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import video
from .masks import heatmaps, palette, segmentation

STRIP = (32, 32, 32)
TEXT = (235, 235, 235)
OUTLINE = (200, 200, 200)  # around each colour swatch, so dark colours stand out from the strip


def labelled_previews(maps: torch.Tensor, names, image: torch.Tensor | None = None):
    """(heatmaps, segmentation) of maps [B, C, H, W], each with its words below: the heatmaps are B*C images
    (image-major) named by concept, the segmentation B images with the legend of all C concepts."""
    b, c, _, width = maps.shape
    colors = palette(c)
    names_below = torch.stack([legend_strip([name], colors[i:i + 1], width) for i, name in enumerate(names)])
    heat = torch.cat([heatmaps(maps, image), names_below.repeat(b, 1, 1, 1)], dim=1)
    legend = legend_strip(names, colors, width)
    seg = torch.cat([segmentation(maps, image), legend.expand(b, -1, -1, -1)], dim=1)
    return heat, seg


def labelled_video_previews(maps: torch.Tensor, names, image: torch.Tensor | None = None):
    """The same for a video's maps [B, C, F, H, W]: every frame with its words below, in video.previews' order
    (heatmaps: each concept's clip in a row; segmentation: the decoded frames)."""
    c, width = maps.shape[1], maps.shape[-1]
    colors = palette(c)
    names_below = torch.stack([legend_strip([name], colors[i:i + 1], width) for i, name in enumerate(names)])
    return video.previews(maps, image, names_below, legend_strip(names, colors, width))


def legend_strip(names, colors: torch.Tensor | None, width: int) -> torch.Tensor:
    """[h, width, 3] dark strip with a swatch of colors[i] and names[i] for each concept, left to right,
    wrapped into as many rows as needed (a name too long for a whole row is cut short with '...').
    colors None: the names alone (captions)."""
    font = _font(width)
    top, bottom = font.getbbox("Ag")[1::2]
    line = bottom - top + 4  # swatch side and text line height
    pad, gap = max(2, line // 3), line
    swatch = 0 if colors is None else line + pad
    rows, x = [[]], pad
    for i, name in enumerate(names):
        text = _fit(name, font, width - 2 * pad - swatch)
        item = swatch + int(font.getlength(text))
        if rows[-1] and x + item > width - pad:
            rows.append([])
            x = pad
        rows[-1].append((x, text, None if colors is None else colors[i]))
        x += item + gap
    canvas = Image.new("RGB", (width, pad + len(rows) * (line + pad)), STRIP)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = pad + r * (line + pad)
        for x, text, color in row:
            if color is not None:
                rgb = tuple(int(v) for v in (color * 255).round())
                draw.rectangle([x, y, x + line - 1, y + line - 1], fill=rgb, outline=OUTLINE)
            draw.text((x + swatch, y + 2 - top), text, fill=TEXT, font=font)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)


def _font(width: int):
    size = max(12, min(32, width // 40))
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1 has only the fixed-size bitmap font
        return ImageFont.load_default()


def _fit(text: str, font, room: int) -> str:
    if font.getlength(text) <= room:
        return text
    while text and font.getlength(text + "...") > room:
        text = text[:-1]
    return text + "..."
