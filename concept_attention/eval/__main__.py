"""Zero-shot segmentation benchmarks for ConceptAttention.

    python -m concept_attention.eval synthetic --json             # the tiny trained Flux, held-out scenes
    python -m concept_attention.eval generation --json            # does the tiny model draw its captions?
    python -m concept_attention.eval imagenet-seg --data gtsegs_ijcv.mat \\
        --model flux1-schnell.safetensors --clip clip_l.safetensors --clip t5xxl_fp16.safetensors --vae ae.safetensors
    python -m concept_attention.eval voc --data VOCdevkit --checkpoint sd3.5_medium_incl_clips.safetensors

Model names are looked up in ComfyUI's model folders (models/diffusion_models, text_encoders, vae,
checkpoints, and any extra_model_paths.yaml), as the loader nodes do. Results are percentages: pixel
accuracy, mIoU over foreground/background, mAP of the soft maps. With --json the last line printed is one
JSON object {"<method>": {"acc": .., "miou": .., "map": .., "n": ..}, ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

REAL = ("imagenet-seg", "voc")
SPACES_COMPARED = ("concept_attention", "cross_attention")  # per-block tables and own-block rows


def _common(p: argparse.ArgumentParser, noise_level: float = 0.5) -> None:
    p.add_argument("--json", action="store_true", help="print the results as one JSON object, last line")
    p.add_argument("--noise-level", type=float, default=noise_level,
                   help="sigma of the single forward pass (default %(default)s)")
    p.add_argument("--samples", type=int, default=1, help="noise samples averaged per image (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", default="", help="joint blocks, e.g. '15-18' (default: the model's default set; "
                                                "synthetic: the tiny model's READ_BLOCKS)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m concept_attention.eval", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synthetic", help="held-out synthetic scenes with the tiny trained Flux (CPU, ~1 min)")
    p.add_argument("--scenes", type=int, default=128, help="held-out scenes (default %(default)s)")
    p.add_argument("--start", type=int, default=None, help="first scene seed (default: the held-out range)")
    p.add_argument("--no-per-block", action="store_true",
                   help="skip the per-block tables and the each-space-at-its-own-blocks check")
    p.add_argument("--select-blocks", action="store_true",
                   help="choose the blocks on validation scenes now (after retraining the tiny model)")
    p.add_argument("--fixture", default=None, help="tiny model weights (default: the shipped fixture)")
    _common(p)

    p = sub.add_parser("generation", help="sample the tiny model's captions and read the images back")
    p.add_argument("--captions", type=int, default=32)
    p.add_argument("--masks", type=int, default=16, help="captions for the generation-path mask check")
    p.add_argument("--fixture", default=None)
    p.add_argument("--layers", default="", help="joint blocks the mask check reads (default: READ_BLOCKS)")
    p.add_argument("--json", action="store_true")

    for name, helptext in (("imagenet-seg", "ImageNet-Segmentation (gtsegs_ijcv.mat)"),
                           ("voc", "PascalVOC 2012, single-class val split")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--data", required=True,
                       help="gtsegs_ijcv.mat" if name == "imagenet-seg" else "VOCdevkit (or VOCdevkit/VOC2012)")
        g = p.add_argument_group("model (ComfyUI model folder names)")
        g.add_argument("--checkpoint", help="a checkpoint with text encoders and VAE (models/checkpoints)")
        g.add_argument("--model", help="diffusion model (models/diffusion_models)")
        g.add_argument("--clip", action="append", default=[],
                       help="text encoder(s) (models/text_encoders): repeat the option or separate names with "
                            "commas (Flux: clip_l and t5xxl; SD3: clip_l, clip_g, t5xxl)")
        g.add_argument("--clip-type", default="flux", choices=("flux", "sd3"))
        g.add_argument("--vae", help="VAE (models/vae)")
        g.add_argument("--weight-dtype", default="default", help="as the Load Diffusion Model node (e.g. fp8_e4m3fn)")
        g.add_argument("--tiny", action="store_true", help="use the tiny fixture model instead (format checks)")
        p.add_argument("--resolution", type=int, default=1024 if name == "imagenet-seg" else 512,
                       help="images are resized to this square size before encoding (default %(default)s)")
        p.add_argument("--token-mode", default="mean", choices=("mean", "first_token"),
                       help="concept encoding: mean over the word's tokens, or the authors' first token")
        p.add_argument("--methods", default="concept_attention",
                       help="comma-separated rows: concept_attention, cross_attention, output_no_softmax, "
                            "value, centre_prior, or 'all' (default %(default)s)")
        p.add_argument("--per-block", action="store_true", help="also each joint block alone (slow)")
        p.add_argument("--class-names", help="JSON object: class id (WordNet id / VOC class) -> concept name")
        p.add_argument("--background-concepts", default=None,
                       help="comma-separated (default: the authors' list for this benchmark)")
        p.add_argument("--start", type=int, default=0, help="skip this many images")
        p.add_argument("--limit", type=int, default=None, help="evaluate at most this many images")
        if name == "voc":
            p.add_argument("--split", default="val")
        _common(p)
    return root


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from .comfy_host import setup

    setup(cpu=True if args.command in ("synthetic", "generation") or getattr(args, "tiny", False) else None)
    if args.command == "synthetic":
        res = run_synthetic(args)
    elif args.command == "generation":
        res = run_generation(args)
    else:
        res = run_real(args)
    if args.json:
        print(json.dumps(res))
    return 0


def _layers(args):
    from ..selection import parse_index_list

    return parse_index_list(args.layers, "layers")


def run_synthetic(args) -> dict:
    from . import scenes, segmentation, synthetic
    from .backends import TinyBackend
    from .tiny_model import FIXTURE, READ_BLOCKS, load

    backend = TinyBackend(load(args.fixture or FIXTURE))
    start = scenes.HELD_OUT_SEED if args.start is None else args.start
    began = time.time()
    settings = dict(noise_level=args.noise_level, samples=args.samples, seed=args.seed)
    layers = _layers(args)
    if args.select_blocks:
        layers = synthetic.select_blocks(backend, **settings)
        how = f"chosen now on {synthetic.VALIDATION_SCENES} validation scenes"
    elif layers is None:
        layers = list(READ_BLOCKS)
        how = f"the fixture's blocks, chosen on {synthetic.VALIDATION_SCENES} validation scenes"
    else:
        how = "given"
    # The fairness check: the spaces compared, each at the blocks chosen for it on validation scenes.
    own = {} if args.no_per_block else {
        f"{m}/own_blocks": (m, synthetic.select_blocks(backend, m, **settings)) for m in SPACES_COMPARED}
    scores = segmentation.run(backend, synthetic.segmentation_examples(args.scenes, start),
                              per_block=() if args.no_per_block else SPACES_COMPARED, extra_runs=own,
                              layers=layers, progress=not args.no_progress, total=args.scenes, **settings)
    res = segmentation.results(scores)
    print(f"Synthetic test scenes {start}..{start + args.scenes - 1} (held out), every object against the rest; "
          f"blocks {','.join(map(str, layers))} ({how}); noise level {args.noise_level}, {args.samples} "
          f"sample(s), {time.time() - began:.0f}s\n")
    print(segmentation.table(res, segmentation.MAIN_ROWS))
    if own:
        print()
        labels = {name: f"{segmentation.LABELS[m]}, blocks {','.join(map(str, b))}" for name, (m, b) in own.items()}
        print(segmentation.table({labels[n]: res[n] for n in own}, title="each space at its own validation blocks"))
    for method in () if args.no_per_block else SPACES_COMPARED:
        print()
        rows = [r for r in res if r.startswith(f"{method}/block_")]
        print(segmentation.table(res, rows, title=f"{segmentation.LABELS[method]}, one block"))
    return res


def run_generation(args) -> dict:
    from . import synthetic
    from .tiny_model import FIXTURE, READ_BLOCKS, load

    tiny = load(args.fixture or FIXTURE)
    rates = synthetic.generation_rates(synthetic.generation_check(tiny, args.captions))
    layers = _layers(args) or list(READ_BLOCKS)
    masks = synthetic.summarize_masks(synthetic.generation_masks(tiny, args.masks, layers=layers))
    print(f"Generated images vs. captions ({args.captions} held-out captions): "
          + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    print(f"Generation-path masks on the drawn objects ({masks['objects']} objects): "
          + ", ".join(f"{k} {v:.3f}" for k, v in masks.items() if k != "objects"))
    return {"generation": rates, "generation_masks": masks}


def run_real(args) -> dict:
    from . import datasets, segmentation
    from .backends import TinyBackend, load_comfy_backend

    methods = tuple(segmentation.METHODS) if args.methods.strip() == "all" else \
        tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.tiny:
        backend = TinyBackend()
    else:
        backend = load_comfy_backend(checkpoint=args.checkpoint, model=args.model, clip=args.clip,
                                     clip_type=args.clip_type, vae=args.vae, weight_dtype=args.weight_dtype,
                                     resolution=args.resolution, token_mode=args.token_mode)
    names = datasets.load_names(args.class_names)
    kw = dict(names=names, start=args.start, limit=args.limit)
    if args.background_concepts is not None:
        kw["background"] = [b.strip() for b in args.background_concepts.split(",") if b.strip()]
    if args.command == "imagenet-seg":
        count = datasets.imagenet_seg_count(args.data)
        examples = datasets.imagenet_seg_examples(args.data, **kw)
        title = "ImageNet-Segmentation"
    else:
        ids = datasets.voc_single_class_ids(args.data, args.split)
        count = len(ids)
        examples = datasets.voc_examples(args.data, args.split, ids=ids, **kw)
        title = f"PascalVOC 2012 {args.split}, single-class split"
    total = max(0, count - args.start) if args.limit is None else max(0, min(args.limit, count - args.start))
    began = time.time()
    scores = segmentation.run(backend, examples, methods, per_block=args.per_block, noise_level=args.noise_level,
                              samples=args.samples, seed=args.seed, layers=_layers(args),
                              progress=not args.no_progress, total=total)
    res = segmentation.results(scores)
    print(f"{title}: {total} images, noise level {args.noise_level}, {args.samples} sample(s), "
          f"{time.time() - began:.0f}s\n")
    print(segmentation.table(res))
    return res


if __name__ == "__main__":
    sys.exit(main())
