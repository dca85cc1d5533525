"""The zero-shot segmentation protocol, run through the pack's from-image path (`maps_from_latent`).

Per example: the image is encoded, captioned and given a concept list; one partial forward pass per noise
sample gives the concepts' maps; each target concept's map is scored against its ground-truth mask with
the paper's metrics (metrics.py). Rows ("methods") are the map spaces of the pack and a centre prior.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import SegmentationScores, centre_prior

# name -> maps_from_latent settings (None: the centre-prior baseline, no model involved)
METHODS = {
    "concept_attention": {"space": "output", "softmax": True},
    "cross_attention": {"space": "cross_attention", "softmax": True},
    "output_no_softmax": {"space": "output", "softmax": False},
    "value": {"space": "value", "softmax": True},
    "centre_prior": None,
}
MAIN_ROWS = tuple(METHODS)
LABELS = {
    "concept_attention": "ConceptAttention (output space + softmax)",
    "cross_attention": "raw cross-attention space (+ softmax)",
    "output_no_softmax": "output space without softmax",
    "value": "value space (+ softmax)",
    "centre_prior": "centre prior (no model)",
}


@dataclass
class Example:
    """One image with its caption, its concept list and the concepts to score against ground truth."""

    image: np.ndarray                     # float32 [H, W, 3] in 0..1
    caption: str
    concepts: list[str]
    targets: list[tuple[int, np.ndarray]]  # (index into concepts, bool mask [h, w] at evaluation size)
    valid: np.ndarray | None = None       # bool [h, w]: pixels that count (None: all)
    info: dict = field(default_factory=dict)


def block_row(block: int, method: str = "concept_attention") -> str:
    return f"{method}/block_{block}"


def run(backend, examples, methods=MAIN_ROWS, *, per_block=False, extra_runs: dict | None = None,
        noise_level: float = 0.5, samples: int = 1, seed: int = 0, layers=None, progress: bool = False,
        total: int | None = None) -> dict:
    """Score every example with every method. Returns {row name: SegmentationScores}.

    backend: has `model_patcher`, `encode(image) -> latent`, `conditioning(caption)`, `concepts(names)`.
    per_block: also each single joint block alone (rows "<method>/block_<i>"): True for ConceptAttention,
    or a tuple of method names. extra_runs: more rows, {row name: (method, layers)}.
    """
    from ..adapters import adapter_for
    from ..from_image import maps_from_latent

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    runs = {m: (METHODS[m], layers) for m in methods}
    for method in (("concept_attention",) if per_block is True else tuple(per_block or ())):
        for block in range(adapter_for(backend.model_patcher).num_blocks):
            runs[block_row(block, method)] = (METHODS[method], [block])
    for name, (method, run_layers) in (extra_runs or {}).items():
        runs[name] = (METHODS[method], list(run_layers))
    scores = {name: SegmentationScores() for name in runs}
    iterator = examples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(examples, total=total, unit="image", dynamic_ncols=True)
    for example in iterator:
        needs_model = any(settings is not None for settings, _ in runs.values())
        if needs_model:
            latent = backend.encode(example.image)
            positive = backend.conditioning(example.caption)
            concepts = backend.concepts(example.concepts)
        for name, (settings, run_layers) in runs.items():
            if settings is None:
                h, w = example.targets[0][1].shape
                soft = torch.from_numpy(centre_prior(h, w))[None].expand(len(example.concepts), h, w)
            else:
                maps = maps_from_latent(backend.model_patcher, concepts, latent, positive, noise_level=noise_level,
                                        samples=samples, seed=seed, layers=run_layers, **settings)
                soft = maps.at_image_size()[0]
            for index, target in example.targets:
                scores[name].add(_resized(soft[index], target.shape), target, example.valid)
        if progress:
            main = scores["concept_attention"] if "concept_attention" in scores else next(iter(scores.values()))
            iterator.set_postfix({k: v for k, v in main.result().items() if k != "n"})
    return scores


def _resized(soft: torch.Tensor, size) -> np.ndarray:
    soft = soft.float()
    if tuple(soft.shape) != tuple(size):
        soft = F.interpolate(soft[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return soft.numpy().astype(np.float64)


def results(scores: dict) -> dict:
    """{row: {"acc", "miou", "map", "n"}}"""
    return {name: s.result() for name, s in scores.items()}


def table(res: dict, rows=None, title: str = "method") -> str:
    """A Markdown table of results (percent)."""
    rows = [r for r in (rows or res) if r in res]
    lines = [f"| {title} | Acc | mIoU | mAP | n |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        r = res[row]
        label = LABELS.get(row, row)
        lines.append(f"| {label} | {r['acc']:.2f} | {r['miou']:.2f} | {r['map']:.2f} | {r['n']} |")
    return "\n".join(lines)
