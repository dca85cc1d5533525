"""ConceptAttention in a minute, on the CPU, with the tiny Flux shipped in concept_attention/eval/fixtures.

    python -m concept_attention.demo --out out/demo
    python -m concept_attention.demo --out out/demo --caption "a red circle above a blue square on sand"

Without --caption: a held-out synthetic scene (32x32 pixels, with exact masks) is mapped the way Concept
Attention from Image maps an existing picture (maps_from_latent), and each mask is compared with the exact one
(IoU). With --caption: the tiny model draws the caption with ComfyUI's sampler while ConceptAttention records
(attach), as the generation nodes do. The masks are argmax masks (each pixel belongs to its strongest concept),
as the Concept Mask node's default mode gives them.

Writes, enlarged 8x: demo.png (one sheet: the image, the segmentation and, per concept, its heatmap and mask,
with the exact masks beside them for a scene), and the single pictures: image.png, segmentation.png (with its
legend), overlay_<concept>.png and heatmap_<concept>.png (with the concept's name), mask_<concept>.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

SCALE = 8


def vocabulary_help() -> str:
    from ..eval import scenes

    other = [w for w in scenes.vocabulary() if w not in scenes.COLORS and w not in scenes.SHAPES
             and w not in scenes.BACKGROUNDS]
    return (f"The tiny model knows only these words (captions and concepts use them alone):\n"
            f"  colours:     {', '.join(scenes.COLORS)}\n"
            f"  shapes:      {', '.join(scenes.SHAPES)}\n"
            f"  backgrounds: {', '.join(scenes.BACKGROUNDS)}\n"
            f"  other:       {', '.join(other)}\n"
            f"A concept is an object ('red circle') or a background ('sand'). The model draws the named colours\n"
            f"and backgrounds, but not reliably the named shapes or positions (docs/EVALUATION.md).")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m concept_attention.demo", description=__doc__,
                                epilog=vocabulary_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", help="output folder (default %(default)s)")
    p.add_argument("--scene", type=int, default=7, help="held-out scene number (default %(default)s)")
    p.add_argument("--caption", default=None, help="generate this caption instead (words listed below)")
    p.add_argument("--concepts", default=None, help="comma-separated concepts (default: the scene's or caption's "
                                                    "objects and background)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default %(default)s)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    from ..eval.comfy_host import setup

    setup(cpu=True)
    import torch

    from ..concepts import parse_concepts
    from ..eval import scenes
    from ..eval.tiny_model import READ_BLOCKS, encode_images, load

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
        raise SystemExit(f"{err}\n\n{vocabulary_help()}") from None
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
    print(f"caption: {caption!r}; concepts: {', '.join(names)}; maps {mode}")
    big = _enlarge(image)
    # the maps on the enlarged image: each token covers SCALE times more pixels
    maps = replace(cm, image_size=tuple(big.shape[1:3]), pixels_per_token=cm.pixels_per_token * SCALE).at_image_size()
    if truth is not None:
        truth = {name: _enlarge(torch.from_numpy(mask).float()[None, ..., None])[0, ..., 0].bool()
                 for name, mask in truth.items()}
    sheet = _write_pictures(out, big, maps, names, truth)
    header = f"'{caption}': maps {mode.split(' (')[0]}"
    _save(out / "demo.png", _with_caption(sheet, header, above=True))
    print(f"wrote {len(list(out.glob('*.png')))} PNGs to {out}/ in {time.time() - began:.1f}s (demo.png: the "
          f"image and its segmentation, then per concept its heatmap and argmax mask"
          f"{', with the exact ones beside them' if truth else ''})")
    return 0


def _write_pictures(out: Path, image, maps, names, truth):
    """Writes the single pictures, prints each mask's coverage (and IoU with the exact mask); returns the sheet."""
    import torch

    from ..masks import heatmaps, palette, segmentation, shape_mask
    from ..preview import labelled_previews

    colors = palette(len(names))
    heat, seg = labelled_previews(maps, names, image)
    overlays = heatmaps(maps, image)
    _save(out / "image.png", image[0])
    _save(out / "segmentation.png", seg[0])
    rows = [[(image[0], "image", None), (segmentation(maps, image)[0], "segmentation (argmax)", None)]]
    if truth:
        exact = torch.stack([truth[name] for name in names]).float()[None]
        rows[0].append((segmentation(exact, image)[0], "exact segmentation", None))
    for i, name in enumerate(names):
        slug = name.replace(" ", "_")
        mask = shape_mask(maps, i, "argmax")[0]
        _save(out / f"heatmap_{slug}.png", _with_caption(heatmaps(maps[:, i:i + 1])[0], name))
        _save(out / f"overlay_{slug}.png", heat[i])
        _save(out / f"mask_{slug}.png", _gray(mask))
        line = f"  {name:16s} argmax mask covers {100 * float(mask.mean()):5.1f}% of the image"
        row = [(overlays[i], name, colors[i]), (_gray(mask), "argmax mask", None)]
        if truth:
            iou = float((mask.bool() & truth[name]).sum()) / max(float((mask.bool() | truth[name]).sum()), 1.0)
            line += f", IoU with the exact mask {iou:.2f}"
            row[1] = (row[1][0], f"argmax mask, IoU {iou:.2f}", None)
            row.append((_gray(truth[name].float()), "exact mask", None))
        rows.append(row)
        print(line)
    return _sheet(rows)


def _sheet(rows):
    """Tiles (picture, caption, swatch colour or None) in a grid, each with its caption below."""
    import torch

    tiles = [[_with_caption(picture, caption, color) for picture, caption, color in row] for row in rows]
    pad = lambda t: torch.nn.functional.pad(t.movedim(-1, 0), (2, 2, 2, 2), value=0.5).movedim(0, -1)  # noqa: E731
    return torch.cat([torch.cat([pad(t) for t in row], dim=1) for row in tiles])


def _with_caption(picture, text: str, color=None, above: bool = False):
    import torch

    from ..preview import legend_strip

    strip = legend_strip([text], None if color is None else color[None], picture.shape[1])
    return torch.cat([strip, picture] if above else [picture, strip])


def _enlarge(image):
    return image.repeat_interleave(SCALE, dim=1).repeat_interleave(SCALE, dim=2)


def _gray(mask):
    return mask[..., None].expand(-1, -1, 3)


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

    Image.fromarray((np.clip(image.numpy(), 0, 1) * 255).round().astype(np.uint8)).save(path)


if __name__ == "__main__":
    sys.exit(main())
