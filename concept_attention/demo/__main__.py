"""ConceptAttention in a minute, on the CPU, with the tiny Flux shipped in concept_attention/eval/fixtures.

    python -m concept_attention.demo --out out/demo
    python -m concept_attention.demo --out out/demo --caption "a red circle above a blue square on sand"

Without --caption: a held-out synthetic scene is encoded and its maps are read with the from-image path
(maps_from_latent), and compared with the scene's exact masks. With --caption: the tiny model draws the
caption with ComfyUI's sampler while ConceptAttention records (attach), as the generation nodes do.
Writes PNGs (enlarged 8x, nearest neighbour): the image, one heatmap, overlay and mask per concept, and the
segmentation (each pixel coloured by its strongest concept), plus demo.png with everything in one sheet.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

SCALE = 8


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m concept_attention.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", help="output folder (default %(default)s)")
    p.add_argument("--scene", type=int, default=7, help="held-out scene number (default %(default)s)")
    p.add_argument("--caption", default=None, help="generate this caption instead (words of the tiny vocabulary)")
    p.add_argument("--concepts", default=None, help="comma-separated concepts (default: the caption's objects "
                                                    "and background)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from ..eval.comfy_host import setup

    setup(cpu=True)
    import torch

    from ..concepts import parse_concepts
    from ..eval import scenes
    from ..eval.tiny_model import READ_BLOCKS, encode_images, load
    from ..masks import heatmaps, segmentation, shape_mask

    began = time.time()
    tiny = load()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = None
    if args.caption is None:
        scene = scenes.make_scene(scenes.HELD_OUT_SEED + args.scene)
        caption, names = scene.caption, list(scene.concepts)
        truth = dict(zip(names, list(scene.masks) + [scene.background_mask]))
    else:
        caption = args.caption
        names = None if args.concepts else _concepts_of(caption)
    if args.concepts:
        names = parse_concepts(args.concepts)
    try:
        concepts = tiny.concepts(names)
        tiny.context([caption])
    except ValueError as err:  # a word outside the tiny vocabulary
        raise SystemExit(str(err)) from None
    if args.caption is None:
        from ..from_image import maps_from_latent

        image = torch.from_numpy(scene.image)[None]
        cm = maps_from_latent(tiny.model_patcher, concepts, encode_images(image), tiny.conditioning(caption),
                              seed=args.seed, layers=list(READ_BLOCKS))
        mode = "from an existing image (maps_from_latent)"
    else:
        from .. import attach
        from ..eval.generate import generate

        patched, recorder = attach(tiny.model_patcher, concepts, layers=list(READ_BLOCKS))
        image = generate(tiny, caption, seed=args.seed, model=patched)
        cm = recorder.concept_maps(recorder.maps(), (image.shape[1] // 2, image.shape[2] // 2))
        mode = "while generating (attach + ComfyUI sampler)"
    maps = cm.at_image_size()
    heat = heatmaps(maps, image)
    seg = segmentation(maps, image)
    _save(out / "image.png", image[0])
    _save(out / "segmentation.png", seg[0])
    heat_row, mask_row, truth_row = [], [], []
    print(f"caption: {caption!r}; concepts: {', '.join(names)}; maps {mode}")
    for i, name in enumerate(names):
        slug = name.replace(" ", "_")
        mask = shape_mask(maps, i, "mean_threshold")[0]
        _save(out / f"heatmap_{slug}.png", heatmaps(maps[:, i:i + 1])[0])
        _save(out / f"overlay_{slug}.png", heat[i])
        _save(out / f"mask_{slug}.png", mask[..., None].expand(-1, -1, 3))
        heat_row.append(heat[i])
        mask_row.append(mask[..., None].expand(-1, -1, 3))
        line = f"  {name:16s} mask covers {100 * float(mask.mean()):5.1f}% of the image"
        if truth is not None and name in truth:
            gt = torch.from_numpy(truth[name])
            iou = float((mask.bool() & gt).sum()) / max(float((mask.bool() | gt).sum()), 1.0)
            line += f", IoU with the exact mask {iou:.2f}"
            truth_row.append(gt.float()[..., None].expand(-1, -1, 3))
        print(line)
    rows = [[image[0], seg[0]], heat_row, mask_row] + ([truth_row] if truth_row else [])
    width = max(len(row) for row in rows)
    blank = torch.ones_like(image[0])
    tile = lambda t: torch.nn.functional.pad(t.movedim(-1, 0), (1, 1, 1, 1), value=0.5).movedim(0, -1)  # noqa: E731
    sheet = torch.cat([torch.cat([tile(t) for t in row + [blank] * (width - len(row))], dim=1) for row in rows])
    _save(out / "demo.png", sheet)
    print(f"wrote {len(list(out.glob('*.png')))} PNGs to {out}/ in {time.time() - began:.1f}s "
          f"(demo.png rows: image and segmentation; heatmap overlays; mean-threshold masks"
          f"{'; exact masks' if truth_row else ''})")
    return 0


def _concepts_of(caption: str) -> list[str]:
    """Objects ("red circle") and the background named by a caption of the tiny vocabulary."""
    from ..eval import scenes

    words = scenes.caption_words(caption)
    names = [f"{w} {words[i + 1]}" for i, w in enumerate(words[:-1])
             if w in scenes.COLORS and words[i + 1] in scenes.SHAPES]
    names += [w for w in words if w in scenes.BACKGROUNDS]
    if not names:
        raise SystemExit(f"No objects or background found in {caption!r}; pass --concepts.")
    return names


def _save(path: Path, image) -> None:
    from PIL import Image

    array = (np.clip(image.numpy(), 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(array).resize((array.shape[1] * SCALE, array.shape[0] * SCALE), Image.NEAREST).save(path)


if __name__ == "__main__":
    sys.exit(main())
