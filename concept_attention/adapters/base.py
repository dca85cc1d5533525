"""What the method needs from a model family, written with the model's own modules.

A family is one subclass of `ModelAdapter` in its own module of this package. It declares what users see
(`family`, `models`, the default blocks and where they come from) and supplies the family's math: the concept
stream's entry (text input path, modulation input), the concept queries/keys/values of a block and the concept
stream's update after it, and where the generated image's tokens sit in the block's joint attention. How the
blocks are reached (a patch replace, or the attention override) is `hook`; the hooking itself lives in
`concept_attention/hooks.py`, not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .. import maps as maps_math
from ..video import FrameLayout

BLOCK_REPLACE = "block_replace"  # ("double_block", i) patch replace; the concept step runs inside its attention
ATTENTION = "attention"          # no replace hook: the concept step runs inside the block's joint attention call


@dataclass
class ModelCall:
    """One call of the diffusion model whose positive-prompt rows are recorded (seen by APPLY_MODEL)."""

    base_model: object            # comfy.model_base.BaseModel
    x: torch.Tensor               # the latent batch as the sampler passes it (all rows)
    sigma: torch.Tensor           # the sampler's sigma per row
    kwargs: dict                  # the model call's extra conditioning: c_crossattn, y, guidance, ref_latents, ...
    rows: object                  # patch.CondRows: the positive-prompt rows
    dtype: torch.dtype
    device: torch.device

    def take(self, t: torch.Tensor) -> torch.Tensor:
        """The recorded rows of a per-row tensor."""
        return self.rows.take(t)

    @property
    def batch(self) -> int:
        return self.rows.count

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of the generated latent: x's, or the first latent's where the sampler packed several into x
        (a nested LATENT, e.g. LTX-2's video and audio; comfy.utils.pack_latents, kwargs["latent_shapes"])."""
        shapes = packed_shapes(self.kwargs)
        return tuple(shapes[0] if shapes else self.x.shape)


def packed_shapes(kwargs: dict):
    """The latents' shapes where the sampler packed several latents into one (None for a single latent)."""
    shapes = kwargs.get("latent_shapes")
    return shapes if shapes is not None and len(shapes) > 1 else None


@dataclass
class ConceptStream:
    """The concept tokens of one model call, carried from block to block, with what the family's blocks need."""

    c: torch.Tensor               # [B, C, D] concept hidden states
    vec: object = None            # the concept stream's modulation input (family-defined)
    extra: dict = field(default_factory=dict)
    last_block: int | None = None  # the last block the run reads (set by the engine): no update is needed after it


@dataclass(frozen=True)
class JointLayout:
    """The attention call of a block that the concept step runs in: its query length and the rows of the
    generated image's tokens among its queries. A joint-attention family's call is the block's first call of
    that length. A cross-attention family's call is its text cross-attention: `keys` is its key length (the
    text's), and `skip` the number of the block's earlier calls with the same query and key lengths (its
    self-attention, an image cross-attention) that pass before it."""

    length: int
    image: slice
    keys: int | None = None
    skip: int = 0


class ModelAdapter:
    """One model family. Subclasses set the declarations and implement the family's math."""

    # ---- declarations (README table, node descriptions, unsupported-model error) ----
    family = ""                   # e.g. "Flux.1"
    models = ""                   # e.g. "dev, schnell, Krea, Fill, Kontext"
    default_blocks_text = ""      # e.g. "double blocks 15-18 (the last four)"
    default_steps_text = "every step"  # what `default_steps` records, for the node's tooltip
    defaults_published = False    # True where the defaults are the paper authors' published choice
    hook = BLOCK_REPLACE
    block_key = "double_block"    # patches_replace["dit"] key of the joint blocks (BLOCK_REPLACE)
    spaces = maps_math.SPACES     # the score spaces this family offers
    softmax_temperature: float | None = None  # None: softmax per block and step (paper); else maps_math.MapRule
    patch_size = 2                # latent pixels per token, spatially
    video = False                 # a [B, C, T, H, W] latent is a video: T frames of a causal video VAE
    temporal_patch_size = 1       # video: latent frames per token frame
    order = 100                   # lower is tried first by adapter_for (subclass families before their base)

    def __init__(self, base_model):
        self.base_model = base_model
        self.dm = base_model.diffusion_model

    @classmethod
    def supports(cls, base_model) -> bool:
        raise NotImplementedError

    def unsupported_space_message(self, space: str) -> str:
        return (f"{self.family} offers the spaces {', '.join(self.spaces)}, not {space!r}. Choose one of those in "
                f"the Concept Attention node's 'space' input.")

    # ---- blocks and steps ----
    @property
    def num_blocks(self) -> int:
        raise NotImplementedError

    def default_blocks(self) -> list[int]:
        raise NotImplementedError

    def default_steps(self, total_steps: int):
        """0-based steps recorded when the user selects none (None: every step of the run)."""
        return None

    @property
    def text_width(self) -> int:
        """Width of the text-encoder features the model's text input path takes."""
        raise NotImplementedError

    @property
    def text_widths(self) -> tuple[int, ...]:
        """Every width of concept embeddings the family takes: `text_width`, and for a family whose text encoder
        may already have run a text stage of the model (LTX-2's connectors), the width of that stage's output."""
        return (self.text_width,)

    # ---- the token grid ----
    def grid(self, latent_shape) -> tuple[int, ...]:
        """Token grid (h, w) of the generated image for a latent of this shape; (frames, h, w) for a video
        family's latent [B, C, T, H, W] (its tokens in frame-major order)."""
        p = self.patch_size
        h, w = latent_shape[-2:]
        spatial = ((h + p - 1) // p, (w + p - 1) // p)
        if self.video and len(latent_shape) == 5:
            t = self.temporal_patch_size
            return ((latent_shape[2] + t - 1) // t, *spatial)
        return spatial

    def pixels_per_token(self) -> int:
        return self.base_model.latent_format.spacial_downscale_ratio * self.patch_size

    def frame_layout(self) -> FrameLayout | None:
        """Video families: how the maps' token frames become decoded frames. Default: one token frame per latent
        frame and the model's causal VAE compression (`latent_format.temporal_downscale_ratio`, the rule
        comfy.sd.VAE applies to this family's VAE); families with temporal patches or other VAEs override it.
        None for the others (an image family's extra latent axis, e.g. Qwen-Image-Layered's layers, is no video)."""
        return FrameLayout(self.base_model.latent_format.temporal_downscale_ratio) if self.video else None

    # ---- the concept stream ----
    def model_timestep(self, call: ModelCall) -> torch.Tensor:
        """The model's own timestep input for the recorded rows."""
        return call.take(self.base_model.model_sampling.timestep(call.sigma).float())

    def start(self, call: ModelCall, embeddings: torch.Tensor, concepts) -> ConceptStream:
        """The concept stream entering the first block: the concept embeddings through the model's text input
        path, and the concept modulation input (timestep and guidance embedding, zero pooled text)."""
        raise NotImplementedError

    def layout(self, index: int, block_args: dict | None, stream: ConceptStream) -> JointLayout:
        """Where block `index`'s joint attention puts the generated image. `block_args` are the patch-replace
        arguments (BLOCK_REPLACE families) or None (ATTENTION families: from what `start` recorded)."""
        raise NotImplementedError

    def attention_block(self, options: dict, length: int, stream: ConceptStream, calls_seen: int):
        """ATTENTION families: the joint block index of an attention call with this sequence `length`, or None
        if the call is not a joint block's attention. Default: `transformer_options["block_index"]` where the
        model sets it, else the count of joint-length calls seen so far in this model call."""
        if length != self.layout(-1, None, stream).length:
            return None
        index = options.get("block_index")
        return calls_seen if index is None else index

    def concept_qkv(self, index: int, stream: ConceptStream, block_args: dict | None):
        """Concept queries, keys, values [B, H, C, Dh] from block `index`'s text-stream weights (RoPE applied at
        the concept positions), and the intermediates `concept_update` needs."""
        raise NotImplementedError

    def concept_update(self, index: int, stream: ConceptStream, o_c: torch.Tensor, intermediates) -> torch.Tensor:
        """The concept stream after block `index`, from the concept attention output o_c [B, C, HD]."""
        raise NotImplementedError

    # ---- one block's concept step (joint-attention families; cross-attention families override it) ----
    def concept_step(self, index: int, attn, stream: ConceptStream, block_args: dict | None,
                     space: str | None):
        """Run block `index`'s concept step inside its joint attention call `attn` (hooks.AttentionCall, recorded
        rows only). Updates the stream (unless no later block is read); returns the raw scores [B, N, C] in
        `space`, or None when space is None (a block the maps do not read)."""
        q_c, k_c, v_c, intermediates = self.concept_qkv(index, stream, block_args)
        image = self.layout(index, block_args, stream).image
        k_x, v_x = attn.k[:, :, image], attn.v[:, :, image]
        o_c = maps_math.concept_attention(q_c, k_c, v_c, k_x, v_x, attn.scale)
        logits = None
        if space == "output":
            logits = maps_math.scores(space, o_x=attn.out[:, image], o_c=o_c)
        elif space == "cross_attention":
            logits = maps_math.scores(space, q_x=attn.q[:, :, image], k_c=k_c)
        elif space == "value":
            logits = maps_math.scores(space, v_x=v_x, v_c=v_c)
        if stream.last_block is None or index < stream.last_block:
            stream.c = self.concept_update(index, stream, o_c.to(stream.c.dtype), intermediates)
        return logits


def last_quarter(num_blocks: int) -> list[int]:
    """This pack's default where the authors published none (SPEC.md section 3): the last quarter of the
    joint blocks, rounded up."""
    return list(range(num_blocks - math.ceil(num_blocks / 4), num_blocks))


def expand_rows(t: torch.Tensor, batch: int) -> torch.Tensor:
    """[C, ...] concept rows as a [batch, C, ...] view."""
    return t.unsqueeze(0).expand(batch, *t.shape)
