"""A tiny text-to-image model for the synthetic benchmark: ComfyUI's own Flux architecture, small, in pixel space.

- "VAE": a fixed, exactly invertible pixel-unshuffle. A 32x32 RGB image in -1..1 becomes a 12-channel 16x16
  latent; Flux's 2x2 patches then make an 8x8 grid of tokens, 4x4 pixels each.
- Text encoder: a learned word embedding over the captions' vocabulary and two residual convolutions over the
  words (local context: "red" in "a red circle" knows which shape it colours). Its outputs are the model's
  `context` [B, L, 64]; there is no pooled text vector (the model's pooled input `y` is always zero).
- A concept's embedding is the encoder's output for the concept's words encoded alone, averaged over them:
  the pack's default concept encoding, so `Concepts(names, embeddings)` works as with a real text encoder.

The fixture (fixtures/tiny_flux.safetensors) holds both networks and, in its metadata, the configs, the
vocabulary and the training record; `python -m concept_attention.eval.train` reproduces it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .scenes import caption_words, vocabulary

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_flux.safetensors"
UNSHUFFLE = 2          # pixels per latent cell along each axis
LATENT_CHANNELS = 3 * UNSHUFFLE * UNSHUFFLE
SPECIAL_TOKENS = ("<pad>", "<null>")  # padding, and the empty caption (classifier-free guidance)

MODEL_CONFIG = dict(image_model="flux", in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, vec_in_dim=8,
                    context_in_dim=64, hidden_size=96, mlp_ratio=4.0, num_heads=4, depth=6, depth_single_blocks=1,
                    axes_dim=[4, 10, 10], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=False,
                    txt_ids_dims=[])
TEXT_CONFIG = dict(width=64, max_len=12, kernel=3, layers=2)
# The joint blocks the evaluation and the demo read: the better half of the fixture's six, by ConceptAttention's
# mIoU from each block alone on validation scenes (eval.synthetic.select_blocks; a test keeps this in step).
# The pack's default for Flux, the last four blocks, suits Flux.1, whose text stream feeds 38 single blocks
# after its double blocks; here the last double blocks' text outputs have (nearly) no later use.
READ_BLOCKS = (0, 2, 3)


# ---------------------------------------------------------------- the fixed pixel codec (pure torch)
def encode_images(images: torch.Tensor) -> torch.Tensor:
    """IMAGE [B, H, W, 3] in 0..1 -> latent [B, 12, H/2, W/2] (pixel-unshuffle of the image in -1..1)."""
    x = images[..., :3].float().movedim(-1, 1) * 2 - 1
    return F.pixel_unshuffle(x, UNSHUFFLE)


def decode_latents(latent: torch.Tensor) -> torch.Tensor:
    """The exact inverse of encode_images (clamped to 0..1): latent -> IMAGE [B, H, W, 3]."""
    x = F.pixel_shuffle(latent.float(), UNSHUFFLE)
    return ((x + 1) / 2).clamp(0, 1).movedim(1, -1).contiguous()


# ---------------------------------------------------------------- the text encoder (pure torch)
class Vocab:
    def __init__(self, words=None):
        self.words = tuple(SPECIAL_TOKENS) + tuple(vocabulary() if words is None else words)
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, text: str) -> list[int]:
        words = caption_words(text)
        unknown = [w for w in words if w not in self.index]
        if unknown:
            raise ValueError(f"words {unknown} are not in the tiny model's vocabulary: {self.words[2:]}")
        return [self.index[w] for w in words]

    def batch(self, captions, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [B, length] padded with <pad> ("" is the empty caption, <null>) and the word mask."""
        rows, mask = [], []
        for text in captions:
            ids = self.ids(text) if text.strip() else [self.index["<null>"]]
            if len(ids) > length:
                raise ValueError(f"caption {text!r} is longer than {length} words")
            rows.append(ids + [self.index["<pad>"]] * (length - len(ids)))
            mask.append([True] * len(ids) + [False] * (length - len(ids)))
        return torch.tensor(rows), torch.tensor(mask)


class LocalLayer(torch.nn.Module):
    """Pre-norm residual 1-D convolution over the words: each word sees its neighbours only."""

    def __init__(self, width: int, kernel: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        self.conv = torch.nn.Conv1d(width, 2 * width, kernel, padding=kernel // 2)
        self.out = torch.nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm(x)
        if mask is not None:  # padding reads as the zeros beyond a caption's ends
            h = h * mask[..., None].to(h.dtype)
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)
        return x + self.out(F.gelu(h))


class TextEncoder(torch.nn.Module):
    """Word embeddings and a few residual convolutions over the word sequence; outputs [B, L, width].

    Context is local (a word sees two neighbours per side after two layers) and there are no absolute
    positions, so a word means the same wherever it stands, "circle" still knows it is red in "a red
    circle", and a concept encoded alone looks like its words inside a caption."""

    def __init__(self, vocab_size: int, width: int = 64, max_len: int = 12, kernel: int = 3, layers: int = 2):
        super().__init__()
        self.max_len = max_len
        self.words = torch.nn.Embedding(vocab_size, width)
        self.layers = torch.nn.ModuleList(LocalLayer(width, kernel) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(width)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids [B, L]; mask [B, L] True at words (None: all words). Padding positions get outputs too (the
        model sees them, as it sees a padded T5 prompt)."""
        x = self.words(ids)
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


# ---------------------------------------------------------------- ComfyUI side
def _pixel_flux_config_class():
    """comfy.supported_models.Flux with the pixel codec's latent format (12 channels, 2x down, no scaling)."""
    import comfy.latent_formats
    import comfy.supported_models

    class PixelLatent(comfy.latent_formats.LatentFormat):
        latent_channels = LATENT_CHANNELS
        spacial_downscale_ratio = UNSHUFFLE
        scale_factor = 1.0

    class PixelFlux(comfy.supported_models.Flux):
        latent_format = PixelLatent

    return PixelFlux


def build_diffusion_model(config: dict | None = None):
    """ComfyUI's Flux model object (model_base.Flux) for the tiny config, weights uninitialised."""
    model_config = _pixel_flux_config_class()({**MODEL_CONFIG, **(config or {})})
    model_config.set_inference_dtype(torch.float32, None)
    model = model_config.get_model({})
    model.diffusion_model.to(torch.float32)
    return model


def init_diffusion_weights(dm: torch.nn.Module, seed: int) -> None:
    """ComfyUI's ops leave weights empty: a seeded init (scaled normal weights, zero biases, unit norms;
    the output layer and the modulation gates' last layer start at zero, as usual for DiTs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in dm.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / p.shape[-1]) ** 0.5)
            elif "norm" in name or "scale" in name:
                p.fill_(1.0)
            else:
                p.zero_()
        dm.final_layer.linear.weight.zero_()
        dm.final_layer.linear.bias.zero_()


@dataclass
class TinyFlux:
    """The tiny text-to-image model: a ComfyUI ModelPatcher plus its text encoder and vocabulary."""

    model_patcher: object
    text_encoder: TextEncoder
    vocab: Vocab
    metadata: dict

    @property
    def diffusion_model(self):
        return self.model_patcher.model.diffusion_model

    @torch.no_grad()
    def context(self, captions) -> torch.Tensor:
        ids, mask = self.vocab.batch(list(captions), self.text_encoder.max_len)
        return self.text_encoder(ids, mask)

    def pooled(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.diffusion_model.params.vec_in_dim)

    def conditioning(self, caption: str):
        """A ComfyUI CONDITIONING for one caption ("" is the empty caption used as the negative)."""
        return [[self.context([caption]), {"pooled_output": self.pooled(1)}]]

    @torch.no_grad()
    def concept_embeddings(self, names) -> torch.Tensor:
        rows = []
        for name in names:
            ids = torch.tensor([self.vocab.ids(name)])
            rows.append(self.text_encoder(ids)[0].mean(dim=0))
        return torch.stack(rows)

    def concepts(self, names):
        from ..concepts import Concepts

        return Concepts(list(names), self.concept_embeddings(list(names)))


def load(path: str | Path = FIXTURE) -> TinyFlux:
    """The trained tiny model (default: the shipped fixture), on the CPU in float32."""
    import comfy.model_patcher
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; train it with `python -m concept_attention.eval.train`.")
    with safe_open(str(path), "pt") as f:
        metadata = {k: json.loads(v) for k, v in f.metadata().items()}
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    model = build_diffusion_model(metadata["model_config"])
    model.diffusion_model.load_state_dict(_strip(tensors, "diffusion_model."))
    text_encoder = TextEncoder(len(Vocab(metadata["vocab"])), **metadata["text_config"])
    text_encoder.load_state_dict(_strip(tensors, "text_encoder."))
    device = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)
    return TinyFlux(patcher, text_encoder, Vocab(metadata["vocab"]), metadata)


def save(path: str | Path, dm: torch.nn.Module, text_encoder: TextEncoder, metadata: dict) -> None:
    """Both networks in fp16 (the fixture stays small) with JSON metadata."""
    from safetensors.torch import save_file

    def half(module: torch.nn.Module, prefix: str) -> dict:
        return {f"{prefix}.{k}": v.detach().to("cpu", torch.float16).contiguous()
                for k, v in module.state_dict().items()}

    tensors = {**half(dm, "diffusion_model"), **half(text_encoder, "text_encoder")}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={k: json.dumps(v) for k, v in metadata.items()})


def _strip(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
