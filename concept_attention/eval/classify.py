"""A simple, hand-written classifier that reads a scene image back: which object colours are there, what
shape each colour's region has, and which background texture. Pure numpy.

It is validated on the scene generator's own ground truth (tests/test_eval_scenes.py: it reads rendered
scenes back almost perfectly), and then judges whether generated images show what their captions say.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import scenes

COLOR_TOLERANCE = 0.28   # RGB distance to an object colour for a pixel to count as that colour
MIN_PIXELS = 12          # smaller colour regions are noise, not objects (the smallest drawn object has ~50)
BACKGROUND_MEANS = {     # mean colour of each texture, measured on rendered scenes
    "sand": (0.80, 0.68, 0.46),
    "grass": (0.22, 0.50, 0.16),
    "water": (0.10, 0.36, 0.55),
    "sky": (0.57, 0.73, 0.95),
}


def color_mask(image: np.ndarray, color: str, tolerance: float = COLOR_TOLERANCE) -> np.ndarray:
    """Pixels [H, W] within `tolerance` of an object colour (RGB, image in 0..1)."""
    ref = np.asarray(scenes.COLORS[color], dtype=np.float32)
    return np.linalg.norm(np.asarray(image, dtype=np.float32)[..., :3] - ref, axis=-1) < tolerance


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean mask."""
    mask = np.asarray(mask, dtype=bool)
    labels = np.zeros(mask.shape, dtype=np.int32)
    best, best_size, current = 0, 0, 0
    for y, x in zip(*np.nonzero(mask)):
        if labels[y, x]:
            continue
        current += 1
        labels[y, x] = current
        stack, size = [(y, x)], 0
        while stack:
            cy, cx = stack.pop()
            size += 1
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    stack.append((ny, nx))
        if size > best_size:
            best, best_size = current, size
    return labels == best if best else np.zeros_like(mask)


def shape_of(mask: np.ndarray) -> str:
    """circle, square or triangle from how much of its bounding box a region fills, and where: a square
    fills its box, a triangle half of it (more at the bottom than the top), a circle about 0.785."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return "none"
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = ys.size / float(h * w)
    mid = (ys.min() + ys.max()) / 2
    top, bottom = (ys < mid).sum(), (ys > mid).sum()
    if fill > 0.88:
        return "square"
    if fill < 0.66 or bottom > 1.6 * max(top, 1):
        return "triangle"
    return "circle"


def background_of(image: np.ndarray, objects: np.ndarray | None = None) -> str:
    """The texture whose mean colour is nearest to the mean of the non-object pixels."""
    image = np.asarray(image, dtype=np.float32)[..., :3]
    keep = np.ones(image.shape[:2], bool) if objects is None else ~np.asarray(objects, dtype=bool)
    mean = image[keep].mean(axis=0) if keep.any() else image.reshape(-1, 3).mean(axis=0)
    return min(BACKGROUND_MEANS, key=lambda name: np.linalg.norm(mean - np.asarray(BACKGROUND_MEANS[name])))


@dataclass(frozen=True)
class Reading:
    objects: dict  # colour -> shape, for every object colour present
    background: str
    masks: dict    # colour -> bool [H, W], the region read as that object


def read_image(image: np.ndarray, background: str | None = None) -> Reading:
    """What the image shows. Knowing the background (as the caption says) excludes colours it clashes
    with, as the generator does."""
    image = np.asarray(image, dtype=np.float32)
    objects, masks = {}, {}
    union = np.zeros(image.shape[:2], bool)
    for color in scenes.COLORS:
        if background is not None and (color, background) in scenes.CLASHES:
            continue
        region = largest_component(color_mask(image, color))
        if region.sum() >= MIN_PIXELS:
            objects[color], masks[color] = shape_of(region), region
            union |= color_mask(image, color)
    return Reading(objects, background_of(image, union), masks)


def caption_agreement(image: np.ndarray, scene: scenes.Scene) -> dict:
    """How well an image shows its caption: per named object, is its colour there and with the right
    shape; is the background right; are there objects in colours the caption does not name."""
    reading = read_image(image, scene.background)
    named = {o.color: o.shape for o in scene.objects}
    out = {
        "objects": len(named),
        "color_found": sum(c in reading.objects for c in named),
        "shape_right": sum(reading.objects.get(c) == s for c, s in named.items()),
        "extra_colors": sum(c not in named for c in reading.objects),
        "background_right": int(reading.background == scene.background),
        "relations": 0,
        "relation_right": 0,
    }
    if len(scene.objects) == 2 and all(o.color in reading.masks for o in scene.objects):
        # "a X above a Y": is the drawn X region's centre above the drawn Y region's (same rule as captions)?
        (ay, ax), (by, bx) = (np.argwhere(reading.masks[o.color]).mean(axis=0) for o in scene.objects)
        if abs(ay - by) >= abs(ax - bx):
            drawn = "above" if ay < by else "below"
        else:
            drawn = "left of" if ax < bx else "right of"
        out["relations"] = 1
        out["relation_right"] = int(drawn == scenes.relation(*scene.objects))
    return out
