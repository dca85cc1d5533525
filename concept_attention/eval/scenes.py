"""Synthetic scenes with exact ground truth: 1-3 flat-coloured shapes on a procedural texture, a caption
that names them, and one exact mask per object. Pure numpy, deterministic per seed, no ComfyUI.

    scene = make_scene(seed=7)
    scene.image      # float32 [H, W, 3] in 0..1 (ComfyUI's IMAGE layout, without the batch axis)
    scene.caption    # "a red circle above a blue square on sand"
    scene.masks      # bool [K, H, W], one per object, in the order of scene.objects
    scene.concepts   # ("red circle", "blue square", "sand"): the objects, then the background

Training draws its scenes from seeds 0 .. 39,999 only. Evaluation uses test scenes from HELD_OUT_SEED on;
choices made by looking at results (which blocks to read) use validation scenes from VALIDATION_SEED on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 32
HELD_OUT_SEED = 1_000_000
VALIDATION_SEED = 2_000_000

COLORS = {
    "red": (0.86, 0.10, 0.10),
    "green": (0.10, 0.78, 0.18),
    "blue": (0.12, 0.22, 0.95),
    "yellow": (0.97, 0.86, 0.10),
    "purple": (0.62, 0.16, 0.78),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ("sand", "grass", "water", "sky")
# Object colours too close to a background's own colours are not drawn on it.
CLASHES = {("green", "grass"), ("blue", "water"), ("blue", "sky"), ("yellow", "sand")}
RELATIONS = ("above", "below", "left of", "right of")

SIZE_RANGE = (10, 15)  # object bounding-box side in pixels, at SIZE 32 (scaled with the image size)


@dataclass(frozen=True)
class SceneObject:
    color: str
    shape: str
    box: tuple[int, int, int]  # top, left, side (pixels)

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def center(self) -> tuple[float, float]:
        top, left, side = self.box
        return top + side / 2, left + side / 2


@dataclass(frozen=True)
class Scene:
    seed: int
    image: np.ndarray        # float32 [H, W, 3] in 0..1
    masks: np.ndarray        # bool [K, H, W]
    objects: tuple[SceneObject, ...]
    background: str
    caption: str

    @property
    def concepts(self) -> tuple[str, ...]:
        """Concept names: one per object ("red circle"), then the background ("sand")."""
        return tuple(o.name for o in self.objects) + (self.background,)

    @property
    def background_mask(self) -> np.ndarray:
        return ~self.masks.any(axis=0)


def vocabulary() -> tuple[str, ...]:
    """Every word a caption can use (the tiny text encoder's vocabulary, without its special tokens)."""
    words = ["a", "and", "on"] + list(COLORS) + list(SHAPES) + list(BACKGROUNDS)
    for relation in RELATIONS:
        words += [w for w in relation.split() if w not in words]
    return tuple(words)


def make_scene(seed: int, size: int = SIZE, num_objects: int | None = None) -> Scene:
    """The scene of this seed: same seed, same image, masks and caption on every machine."""
    rng = np.random.default_rng(seed)
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    count = int(rng.integers(1, 4)) if num_objects is None else int(num_objects)
    if not 1 <= count <= 3:
        raise ValueError(f"num_objects must be 1, 2 or 3, got {num_objects}")
    allowed = [c for c in COLORS if (c, background) not in CLASHES]
    colors = [allowed[i] for i in rng.permutation(len(allowed))[:count]]
    shapes = [SHAPES[rng.integers(len(SHAPES))] for _ in range(count)]
    boxes = _place(rng, count, size)
    image = texture(background, size, rng)
    masks = np.zeros((count, size, size), dtype=bool)
    objects = []
    for k, (color, shape, box) in enumerate(zip(colors, shapes, boxes)):
        masks[k] = shape_mask(shape, box, size)
        shade = np.asarray(COLORS[color], dtype=np.float32) + rng.normal(0, 0.025, (size, size, 3)).astype(np.float32)
        image[masks[k]] = np.clip(shade[masks[k]], 0, 1)
        objects.append(SceneObject(color, shape, box))
    objects = tuple(objects)
    order = _caption_order(rng, objects)
    objects = tuple(objects[i] for i in order)
    masks = masks[order]
    return Scene(seed, image, masks, objects, background, caption(objects, background))


def make_scenes(count: int, start: int = HELD_OUT_SEED, size: int = SIZE) -> list[Scene]:
    """`count` consecutive scenes from seed `start` (default: the held-out range)."""
    return [make_scene(start + i, size) for i in range(count)]


def relation(a: SceneObject, b: SceneObject) -> str:
    """Where `a` is relative to `b`, along the axis where their centres differ most."""
    (ay, ax), (by, bx) = a.center, b.center
    if abs(ay - by) >= abs(ax - bx):
        return "above" if ay < by else "below"
    return "left of" if ax < bx else "right of"


def caption(objects, background: str) -> str:
    phrases = [f"a {o.name}" for o in objects]
    if len(objects) == 1:
        body = phrases[0]
    elif len(objects) == 2:
        body = f"{phrases[0]} {relation(objects[0], objects[1])} {phrases[1]}"
    else:
        body = f"{phrases[0]}, {phrases[1]} and {phrases[2]}"
    return f"{body} on {background}"


def caption_words(text: str) -> list[str]:
    """The caption's words as the tiny text encoder reads them (commas dropped, lower case)."""
    return text.replace(",", " ").lower().split()


def _caption_order(rng, objects) -> list[int]:
    if len(objects) == 2:  # name the upper (or left) object first half of the time, the other half second
        return [0, 1] if rng.random() < 0.5 else [1, 0]
    return list(rng.permutation(len(objects)))


def _place(rng, count: int, size: int) -> list[tuple[int, int, int]]:
    """Non-overlapping square boxes (a 1-pixel gap at least), fully inside the image."""
    lo, hi = (round(s * size / SIZE) for s in SIZE_RANGE)
    for _ in range(1000):
        boxes = []
        for _ in range(count):
            side = int(rng.integers(lo, hi + 1))
            top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
            boxes.append((top, left, side))
        if all(_apart(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]):
            return boxes
    raise RuntimeError("could not place the objects")  # never happens at the sizes used here


def _apart(a, b, gap: int = 1) -> bool:
    (at, al, asz), (bt, bl, bsz) = a, b
    return (at + asz + gap <= bt or bt + bsz + gap <= at or al + asz + gap <= bl or bl + bsz + gap <= al)


def shape_mask(shape: str, box: tuple[int, int, int], size: int) -> np.ndarray:
    """Exact pixel mask of a shape in its box: a pixel belongs to it when its centre does."""
    top, left, side = box
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    u, v = (x - left) / side, (y - top) / side  # 0..1 inside the box
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if shape == "square":
        return inside
    if shape == "circle":
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    if shape == "triangle":  # apex up, base along the bottom of the box
        return inside & (np.abs(u - 0.5) <= 0.5 * v)
    raise ValueError(f"unknown shape {shape!r}")


def texture(name: str, size: int, rng) -> np.ndarray:
    """A procedural background texture, float32 [size, size, 3] in 0..1."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if name == "sand":
        base = np.array([0.80, 0.68, 0.46], np.float32)
        grain = rng.normal(0, 0.06, (size, size, 1))
        dunes = 0.05 * np.sin(2 * np.pi * (2.0 * y + 0.7 * x + rng.random()))[..., None]
        img = base + grain + dunes
    elif name == "grass":
        base = np.array([0.22, 0.50, 0.16], np.float32)
        blades = _smooth(rng.normal(0, 1, (size, size)), axis=0, width=5)[..., None]
        img = base + 0.09 * blades * np.array([0.6, 1.0, 0.5], np.float32) + rng.normal(0, 0.02, (size, size, 1))
    elif name == "water":
        base = np.array([0.10, 0.36, 0.55], np.float32)
        phase = rng.random() * 2 * np.pi
        waves = np.sin(2 * np.pi * 5.0 * y + 1.5 * np.sin(2 * np.pi * x + phase))[..., None]
        img = base + 0.07 * waves * np.array([0.5, 0.8, 1.0], np.float32) + rng.normal(0, 0.015, (size, size, 1))
    elif name == "sky":
        top_c, low_c = np.array([0.35, 0.58, 0.92], np.float32), np.array([0.70, 0.84, 0.98], np.float32)
        img = top_c + (low_c - top_c) * y[..., None]
        for _ in range(int(rng.integers(1, 3))):
            cy, cx, r = rng.random(), rng.random(), 0.10 + 0.08 * rng.random()
            cloud = np.exp(-(((x - cx) / (1.8 * r)) ** 2 + ((y - cy) / r) ** 2))[..., None]
            img = img + (np.array([0.97, 0.97, 0.98], np.float32) - img) * 0.8 * cloud
    else:
        raise ValueError(f"unknown background {name!r}")
    return np.clip(img, 0, 1).astype(np.float32)


def _smooth(a: np.ndarray, axis: int, width: int) -> np.ndarray:
    """Box blur along one axis (wrapping), for streaky textures."""
    out = np.zeros_like(a)
    for shift in range(-(width // 2), width // 2 + 1):
        out += np.roll(a, shift, axis=axis)
    return out / np.sqrt(width)
