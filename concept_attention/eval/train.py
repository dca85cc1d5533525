"""Train the tiny pixel-space Flux and its text encoder on synthetic scenes (rectified flow).

    python -m concept_attention.eval.train                  # reproduces fixtures/tiny_flux.safetensors
    python -m concept_attention.eval.train --out my.safetensors --steps 200
    python -m concept_attention.eval.train --out big.safetensors --device cuda --steps 20000 \\
        --model '{"depth": 12, "depth_single_blocks": 12}'   # a deeper model, on a GPU

Deterministic: a fixed seed, a fixed CPU thread count, scenes drawn by seed from a pool of training seeds
(0 .. pool-1, far below scenes.HELD_OUT_SEED). The loss of every step is printed and the first ones are
stored in the fixture's metadata, so a short prefix can be re-run and compared (tests/test_eval_tiny_model.py
does). The fixture is a CPU run on one thread (26 minutes here); --threads 2 takes both cores of a two-core
machine (another run: other kernels' summation order, so other weights).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import scenes
from .tiny_model import (FIXTURE, MODEL_CONFIG, TEXT_CONFIG, UNSHUFFLE, TextEncoder, Vocab,
                         build_diffusion_model, encode_images, init_diffusion_weights, save)

DEFAULTS = dict(model={}, steps=1800, batch=48, pool=40000, lr=1e-3, warmup=100, min_lr_ratio=0.05, weight_decay=0.01,
                ema=0.998, caption_dropout=0.1, object_weight=1.0, seed=0, threads=1, recorded_losses=20)


def sample_sigmas(gen: torch.Generator, batch: int) -> torch.Tensor:
    """Logit-normal noise levels (as SD3 / Flux training), in (0, 1)."""
    return torch.sigmoid(torch.randn(batch, generator=gen))


def lr_at(step: int, cfg: dict) -> float:
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    progress = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
    ratio = cfg["min_lr_ratio"] + (1 - cfg["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg["lr"] * ratio


class ScenePool:
    """Training scenes by seed (0 .. pool-1), each rendered once and kept as 8-bit RGB with its object mask."""

    def __init__(self, size: int):
        self.size = size
        self.scenes: dict[int, tuple[np.ndarray, np.ndarray, str]] = {}

    def get(self, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
        """(image uint8 [H, W, 3], pixels of any object bool [H, W], caption)"""
        if seed not in self.scenes:
            scene = scenes.make_scene(seed)
            self.scenes[seed] = (np.round(scene.image * 255).astype(np.uint8), ~scene.background_mask, scene.caption)
        return self.scenes[seed]


def batch_scenes(step: int, cfg: dict, pool: ScenePool):
    """The scenes of one step: seeds drawn from the training pool by a per-step generator; a
    `caption_dropout` share of the captions is replaced by the empty caption (for guidance).
    Returns images [B, H, W, 3] in 0..1, object masks [B, H, W] and captions."""
    rng = np.random.default_rng([cfg["seed"], step])
    seeds = rng.integers(0, pool.size, cfg["batch"])
    drop = rng.random(cfg["batch"]) < cfg["caption_dropout"]
    batch = [pool.get(int(s)) for s in seeds]
    images = torch.from_numpy(np.stack([image for image, _, _ in batch])).float() / 255
    objects = torch.from_numpy(np.stack([mask for _, mask, _ in batch]))
    captions = ["" if d else text for (_, _, text), d in zip(batch, drop)]
    return images, objects, captions


def loss_weights(objects: torch.Tensor, object_weight: float) -> torch.Tensor:
    """Per latent element: `object_weight` on the objects' pixels and a one-pixel ring around them (where
    their shapes are decided), 1 elsewhere. objects: bool [B, H, W] -> [B, 12, H/2, W/2]."""
    near = F.max_pool2d(objects[:, None].float(), 3, stride=1, padding=1)
    weight = 1 + (object_weight - 1) * near
    return F.pixel_unshuffle(weight, UNSHUFFLE).repeat(1, 3, 1, 1)  # the codec's channel order: colour-major


def train(cfg: dict | None = None, log=print, stop_after: int | None = None, device: str = "cpu"):
    """Train from scratch. Returns (diffusion model, text encoder, EMA copies, losses, the config used).

    cfg: DEFAULTS overrides; its "model" entry overrides MODEL_CONFIG (e.g. {"depth_single_blocks": 4}).
    stop_after: end after that many steps (same schedule as the full run: for reproducibility checks).
    device: where the networks train ("cuda" for a GPU). The scenes, the noise and the noise levels are drawn
    on the CPU whatever the device, so a GPU run trains on the same data; its weights differ from a CPU
    run's in the last bits (other kernels), so only CPU runs reproduce the fixture bit for bit."""
    import comfy.model_management

    cfg = {**DEFAULTS, **(cfg or {})}
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg["threads"])
    was_training = comfy.model_management.in_training
    comfy.model_management.in_training = True  # ComfyUI's differentiable RoPE path (as its own trainer does)
    try:
        return _train(cfg, log, stop_after, torch.device(device))
    finally:
        comfy.model_management.in_training = was_training
        torch.set_num_threads(threads)


def _train(cfg: dict, log, stop_after, device: torch.device):
    torch.manual_seed(cfg["seed"])
    model = build_diffusion_model(cfg["model"])
    dm = model.diffusion_model
    init_diffusion_weights(dm, cfg["seed"])
    vocab = Vocab()
    text_encoder = TextEncoder(len(vocab), **TEXT_CONFIG)
    dm.to(device).train()
    text_encoder.to(device)
    params = list(dm.parameters()) + list(text_encoder.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], betas=(0.9, 0.99))
    ema_dm, ema_te = copy.deepcopy(dm).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    losses = []
    pool = ScenePool(cfg["pool"])
    pooled = torch.zeros(cfg["batch"], dm.params.vec_in_dim, device=device)
    start = time.time()
    steps = cfg["steps"] if stop_after is None else min(stop_after, cfg["steps"])
    for step in range(steps):
        images, objects, captions = batch_scenes(step, cfg, pool)
        x0 = encode_images(images)
        ids, mask = vocab.batch(captions, text_encoder.max_len)
        sigma = sample_sigmas(gen, x0.shape[0])
        noise = torch.randn(x0.shape, generator=gen)
        x0, ids, mask, sigma, noise = (t.to(device) for t in (x0, ids, mask, sigma, noise))
        s = sigma.view(-1, 1, 1, 1)
        x_t = (1 - s) * x0 + s * noise
        # ComfyUI's Flux (CONST) convention: denoised = x_t - sigma * output, so output = noise - x0.
        # ComfyUI's blocks update their residual streams in place (`img += ...`), which autograd refuses
        # when the old value was saved for backward; saving copies makes the stock blocks trainable as is.
        with torch.autograd.graph.saved_tensors_hooks(_save_copy, _identity):
            out = dm(x_t, sigma, text_encoder(ids, mask), y=pooled[: x0.shape[0]])
        if cfg["object_weight"] == 1:
            loss = F.mse_loss(out, noise - x0)  # the fixture's loss
        else:
            weight = loss_weights(objects, cfg["object_weight"]).to(device)
            loss = (weight * (out - (noise - x0)) ** 2).sum() / weight.sum()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay_rate = min(cfg["ema"], (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in ((ema_dm, dm), (ema_te, text_encoder)):
                for pe, pl in zip(ema.parameters(), live.parameters()):
                    pe.lerp_(pl, 1 - decay_rate)
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == steps - 1:
            recent = sum(losses[-50:]) / len(losses[-50:])
            log(f"step {step:5d}/{cfg['steps']}  loss {losses[-1]:.4f}  (mean of last 50: {recent:.4f})  "
                f"lr {lr_at(step, cfg):.2e}  {time.time() - start:6.0f}s", flush=True)
    return dm, text_encoder, ema_dm, ema_te, losses, cfg


def _save_copy(t: torch.Tensor) -> torch.Tensor:
    return t.clone()


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(FIXTURE), help="where to write the weights (default: the fixture)")
    for key in ("steps", "batch", "seed", "threads"):
        parser.add_argument(f"--{key}", type=int, default=DEFAULTS[key])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument("--object-weight", type=float, default=DEFAULTS["object_weight"],
                        help="loss weight of the objects' pixels and the ring around them (default 1: plain MSE)")
    parser.add_argument("--device", default="cpu", help='"cpu" (reproduces the fixture) or e.g. "cuda"')
    parser.add_argument("--model", type=json.loads, default={},
                        help='model config overrides as JSON, e.g. \'{"depth": 8}\' (default: the fixture\'s)')
    args = parser.parse_args(argv)
    _setup_comfyui()
    cfg = {**DEFAULTS, "steps": args.steps, "batch": args.batch, "seed": args.seed, "threads": args.threads,
           "lr": args.lr, "object_weight": args.object_weight, "model": args.model}
    start = time.time()
    _, _, ema_dm, ema_te, losses, cfg = train(cfg, device=args.device)
    metadata = {"model_config": {**MODEL_CONFIG, **cfg["model"]}, "text_config": TEXT_CONFIG,
                "vocab": list(Vocab().words[2:]), "train_config": cfg, "first_losses": losses[: cfg["recorded_losses"]],
                "final_loss_mean_100": sum(losses[-100:]) / len(losses[-100:]),
                "train_seconds": round(time.time() - start, 1), "device": args.device, "torch": torch.__version__}
    save(args.out, ema_dm, ema_te, metadata)
    print(f"wrote {args.out} ({time.time() - start:.0f}s)")
    return 0


def _setup_comfyui() -> None:
    from .comfy_host import setup

    setup()


if __name__ == "__main__":
    sys.exit(main())
