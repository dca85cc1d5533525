"""The synthetic benchmark: held-out generated scenes, the tiny trained Flux, exact ground truth.

- segmentation_examples(): each held-out scene is one Example; its concepts are the objects ("red circle")
  and the background ("sand"); every object is a target (the object against the rest of the image).
- generation_check(): sample captions with ComfyUI's sampler and read the images back (classify.py).
- generation_masks(): attach ConceptAttention, sample, and see whether each object's mask lands on the
  object the model drew (found by its colour).
"""

from __future__ import annotations

import numpy as np

from . import classify, scenes
from .segmentation import Example

DEFAULT_SCENES = 128
VALIDATION_SCENES = 32


def segmentation_examples(count: int = DEFAULT_SCENES, start: int = scenes.HELD_OUT_SEED):
    for scene in scenes.make_scenes(count, start):
        yield Example(scene.image, scene.caption, list(scene.concepts),
                      [(k, scene.masks[k]) for k in range(len(scene.objects))], info={"seed": scene.seed})


def select_blocks(backend, method: str = "concept_attention", count: int = VALIDATION_SCENES,
                  start: int = scenes.VALIDATION_SEED, **kw) -> list[int]:
    """The blocks to read, chosen on validation scenes (never the test scenes): the better half of the joint
    blocks by the method's mIoU from each block alone (the paper picked Flux's blocks 15-18 likewise, from a
    per-block study)."""
    from .segmentation import run

    scores = run(backend, segmentation_examples(count, start), methods=(), per_block=(method,), **kw)
    miou = {int(name.rsplit("_", 1)[1]): s.result()["miou"] for name, s in scores.items()}
    return sorted(sorted(miou, key=lambda b: -miou[b])[: (len(miou) + 1) // 2])


def generation_check(tiny, count: int = 32, start: int = scenes.HELD_OUT_SEED + 500_000, seed: int = 0,
                     **sampling) -> dict:
    """Generate one image per held-out caption; totals of what the images show vs. what was asked."""
    from .generate import generate

    totals: dict = {}
    for i, scene in enumerate(scenes.make_scenes(count, start)):
        image = generate(tiny, scene.caption, seed=seed + i, **sampling)[0].numpy()
        for key, value in classify.caption_agreement(image, scene).items():
            totals[key] = totals.get(key, 0) + value
    totals["images"] = count
    return totals


def generation_rates(totals: dict) -> dict:
    """Rates (0..1): colour found / right shape per named object, background right per image, images with
    an object in a colour the caption does not name, and the relation right in two-object captions whose
    objects were both drawn."""
    return {"color": totals["color_found"] / totals["objects"],
            "shape": totals["shape_right"] / totals["objects"],
            "background": totals["background_right"] / totals["images"],
            "extra_colors": totals["extra_colors"] / totals["images"],
            "relation": totals["relation_right"] / max(totals["relations"], 1),
            "relations_judged": totals["relations"]}


def generation_masks(tiny, count: int = 16, start: int = scenes.HELD_OUT_SEED + 600_000, seed: int = 0,
                     layers=None, **sampling) -> list[dict]:
    """Per generated object that the image really shows (found by its colour): does the concept's map
    point at it (its strongest pixel lies on the object), how much of the object the concept wins (argmax
    over the concepts), and the IoU of the concept's mean-thresholded mask with the object. `chance` is
    the object's share of the image (what a random point would hit)."""
    from .. import attach
    from ..masks import to_image_size
    from .generate import generate
    from .metrics import binarize_at_mean

    rows = []
    for i, scene in enumerate(scenes.make_scenes(count, start)):
        concepts = tiny.concepts(scene.concepts)
        patched, recorder = attach(tiny.model_patcher, concepts, layers=layers)
        image = generate(tiny, scene.caption, seed=seed + i, model=patched)[0].numpy()
        maps = to_image_size(recorder.maps(), image.shape[:2], recorder.pixels_per_token)[0].numpy()
        reading = classify.read_image(image, scene.background)
        winner = maps.argmax(axis=0)
        for k, obj in enumerate(scene.objects):
            region = reading.masks.get(obj.color)
            if region is None:
                continue  # the model did not draw this object: nothing to land on
            mask = binarize_at_mean(maps[k])
            peak = np.unravel_index(np.argmax(maps[k]), maps[k].shape)
            rows.append({"seed": scene.seed, "concept": obj.name, "peak_hit": float(region[peak]),
                         "argmax_share": float((winner[region] == k).mean()),
                         "iou": float((mask & region).sum() / (mask | region).sum()),
                         "chance": float(region.mean())})
    return rows


def summarize_masks(rows: list[dict]) -> dict:
    keys = ("peak_hit", "argmax_share", "iou", "chance")
    return {"objects": len(rows), **{k: float(np.mean([r[k] for r in rows])) if rows else 0.0 for k in keys}}
