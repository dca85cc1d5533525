"""Concept lists and their text-encoder embeddings.

A concept enters the diffusion model like a prompt token: its embedding lives in the text encoder's output
space (before the model's own text input path), one row per concept.
"""

from __future__ import annotations

import importlib
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import ConceptAttentionError

TOKEN_MODES = ("mean", "first_token")


@dataclass(frozen=True)
class TokenSpan:
    """Where a concept's own word tokens sit in its standalone encoding: rows [start, stop) of the encoder
    output `cond`, which has `length` rows in all (as this encoder returns them: the template, special and
    padding tokens it keeps included; encoders that cut the template's head off, like Qwen-Image's, start
    at the user's text).
    Adapters whose rotary text positions depend on the token index read it (SPEC.md section 3, Positions)."""

    start: int
    stop: int
    length: int


@dataclass(frozen=True)
class Concepts:
    """Concept names and their raw text-encoder embeddings, `embeddings[i]` belonging to `names[i]`.

    `spans[i]` (optional) locates concept i's word tokens in its own encoding; None when the embeddings were
    given directly, in which case position-dependent families place every concept at their first text
    position."""

    names: tuple[str, ...]
    embeddings: torch.Tensor  # [C, ctx_dim]
    spans: tuple[TokenSpan, ...] | None

    def __init__(self, names, embeddings: torch.Tensor, spans=None):
        names = tuple(check_names(list(names)))
        if embeddings.ndim != 2 or embeddings.shape[0] != len(names):
            raise ConceptAttentionError(
                f"Concepts need one embedding row per name: got {len(names)} names and embeddings of shape "
                f"{tuple(embeddings.shape)}; pass a [C, ctx_dim] tensor.")
        if spans is not None and len(spans) != len(names):
            raise ConceptAttentionError(f"Concepts need one token span per name: got {len(spans)} for "
                                        f"{len(names)} names.")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "embeddings", embeddings.detach())
        object.__setattr__(self, "spans", None if spans is None else tuple(spans))

    def __len__(self) -> int:
        return len(self.names)


def parse_concepts(text: str) -> list[str]:
    """Split a typed concept list into names: "dog, grass, sky", one per line, or both ("dog,\ngrass,\nsky").

    Any run of commas, new lines and blanks is one separator, so blank lines, trailing commas and the ", ,"
    left behind by deleting a word all read as a person means them."""
    return check_names([name for name in re.split(r"\s*[,\n]\s*", text.strip()) if name])


def check_names(names: list[str]) -> list[str]:
    if not names:
        raise ConceptAttentionError(
            "No concepts given. Type the things to find, separated by commas, e.g. 'cat, sofa, window'.")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ConceptAttentionError(f"Concept number {i + 1} is empty. Give every concept a word or phrase.")
        key = name.strip().lower()
        if key in seen:
            first, numbers = names[seen[key]].strip(), f"numbers {seen[key] + 1} and {i + 1}"
            what = (f"Concept {first!r} appears twice ({numbers})." if first == name.strip() else
                    f"Concepts {first!r} and {name.strip()!r} ({numbers}) are the same concept: names are matched "
                    f"ignoring case, as Concept Mask finds them.")
            raise ConceptAttentionError(f"{what} List each concept once: the maps compete over the list.")
        seen[key] = i
    return [n.strip() for n in names]


def encode_concepts(clip, names, token_mode: str = "mean") -> Concepts:
    """Encode each concept alone with a ComfyUI CLIP object, through its text encoder exactly as a prompt is
    encoded (chat template included), and keep the `cond` rows of the concept's own word tokens.

    token_mode "mean" averages those rows (no BOS/EOS, padding or template tokens); "first_token" takes the
    first of them, the authors' choice (for T5 often a bare word-piece).
    """
    if token_mode not in TOKEN_MODES:
        raise ConceptAttentionError(f"token_mode must be one of {TOKEN_MODES}, got {token_mode!r}.")
    names = check_names(list(names))
    encoder = _text_encoder(clip.cond_stage_model)
    empty = clip.tokenize("", return_word_ids=True)  # what the tokenizer puts around any text
    rows, spans = zip(*(_encode_one(clip, encoder, empty, name, token_mode) for name in names))
    return Concepts(names, torch.stack(rows), spans)


def _encode_one(clip, encoder: "_TextEncoder", empty, name: str, token_mode: str):
    tokens = clip.tokenize(name, return_word_ids=True)
    cond = clip.encode_from_tokens(tokens)[0].float()  # [rows, ctx]
    rows = _word_rows(encoder, clip.cond_stage_model, tokens, empty, len(cond), name)
    picked = cond[rows[:1]] if token_mode == "first_token" else cond[rows]
    return picked.mean(dim=0).cpu(), TokenSpan(rows[0], rows[-1] + 1, len(cond))


def _word_rows(encoder: "_TextEncoder", model, tokens, empty, n_rows: int, name: str) -> list[int]:
    """Rows of `cond` that hold the concept's own word tokens.

    In each tokenizer output that makes up `cond` (in order along the token axis), the concept's tokens are
    where its tokenization differs from the empty text's (this removes chat templates, whose tokens carry word
    ids like the text's), less those without a word id (BOS, EOS, padding). Encoders that cut the template's
    leading tokens off `cond` shift the rows."""
    rows: list[int] = []
    n_tokens = 0
    for part in encoder.parts(model):
        own = _flat(tokens, part)
        start, stop = _differing_span(own, _flat(empty, part))
        rows += [n_tokens + i for i in range(start, stop) if _word_id(own[i]) != 0]
        n_tokens += len(own)
    if not rows:
        raise ConceptAttentionError(
            f"Concept {name!r} encodes to no word tokens with this text encoder. Use a word or phrase.")
    cut = n_tokens - n_rows
    if cut != 0 and not (encoder.cuts_leading and 0 < cut <= rows[0]):
        raise ConceptAttentionError(
            f"Unexpected text-encoder output for {name!r}: {n_rows} rows where the tokenizer gave {n_tokens} "
            f"tokens, so the concept's rows cannot be located. This text encoder ({encoder.label}) may have "
            f"changed in this ComfyUI version; please report it.")
    return [r - cut for r in rows]


def _flat(tokens: dict, part: str) -> list[tuple]:
    """One tokenizer output (a list of chunks) as one token list."""
    return [tok for chunk in tokens[part] for tok in chunk]


def _word_id(token: tuple) -> int:
    """The tokenizer's word id (return_word_ids=True): 0 for BOS, EOS and padding."""
    return token[2]


def _differing_span(own: list[tuple], empty: list[tuple]) -> tuple[int, int]:
    """[start, stop) of `own` outside its longest common prefix and suffix with `empty`. BOS/EOS/padding at
    either end are set aside first: the amount of padding depends on the text's length."""
    def ends(toks):
        lo, hi = 0, len(toks)
        while lo < hi and _word_id(toks[lo]) == 0:
            lo += 1
        while hi > lo and _word_id(toks[hi - 1]) == 0:
            hi -= 1
        return lo, hi

    def same(a, b):  # embeddings ("embedding:name" syntax) are tensors or dicts, never template tokens
        return isinstance(a[0], numbers.Integral) and isinstance(b[0], numbers.Integral) and a[0] == b[0]

    (lo, hi), (e_lo, e_hi) = ends(own), ends(empty)
    while lo < hi and e_lo < e_hi and same(own[lo], empty[e_lo]):
        lo, e_lo = lo + 1, e_lo + 1
    while hi > lo and e_hi > e_lo and same(own[hi - 1], empty[e_hi - 1]):
        hi, e_hi = hi - 1, e_hi - 1
    return lo, hi


@dataclass(frozen=True)
class _TextEncoder:
    """Facts about one ComfyUI text encoder (comfy/text_encoders/<module>.py, class `cls`), read from its
    encode_token_weights, which makes `cond`. Subclasses that ComfyUI's per-checkpoint factories make
    (klein_te, pixart_te, ...) share the facts; one that overrides encode_token_weights is another encoder."""

    label: str
    module: str
    cls: str
    parts: Callable  # model -> the tokenizer outputs that `cond` is made of, in order along the token axis
    cuts_leading: bool = False  # encode_token_weights drops the template's leading tokens (or left padding)

    def matches(self, model) -> bool:
        try:
            cls = getattr(importlib.import_module(f"comfy.text_encoders.{self.module}"), self.cls)
        except (ImportError, AttributeError):  # a ComfyUI without this family
            return False
        return isinstance(model, cls) and type(model).encode_token_weights is cls.encode_token_weights


def _own_part(model) -> list[str]:
    """SD1ClipModel wrappers encode their one tokenizer output, named like the wrapped model."""
    return [model.clip_name]


def _sd3_parts(model) -> list[str]:
    """SD3ClipModel.encode_token_weights: CLIP-L and/or CLIP-G (same tokens, features side by side; the "l"
    tokens when CLIP-L is loaded, else "g"), then T5-XXL, concatenated along the token axis."""
    parts = []
    if model.clip_l is not None or model.clip_g is not None:
        parts.append("l" if model.clip_l is not None else "g")
    if model.t5xxl is not None:
        parts.append("t5xxl")
    return parts


_TEXT_ENCODERS = (
    # FluxClipModel.encode_token_weights returns the T5 output as cond (CLIP-L gives only the pooled vector)
    _TextEncoder("Flux.1 (CLIP-L + T5-XXL)", "flux", "FluxClipModel", lambda m: ["t5xxl"]),
    _TextEncoder("SD3 / SD3.5 (CLIP-L, CLIP-G, T5-XXL)", "sd3_clip", "SD3ClipModel", _sd3_parts),
    # Flux2TEModel: three hidden layers side by side per token (Mistral 3 24B for Flux.2 dev; klein_te puts
    # Qwen3 4B/8B in it for Klein); every token keeps its row, template and padding included
    _TextEncoder("Flux.2 dev (Mistral 3 Small) and Flux.2 Klein (Qwen3 4B/8B)", "flux", "Flux2TEModel",
                 _own_part),
    # QwenImageTEModel.encode_token_weights cuts the system prompt and "<|im_start|>user\n" off cond
    _TextEncoder("Qwen-Image / Qwen-Image-Edit (Qwen2.5-VL 7B)", "qwen_image", "QwenImageTEModel", _own_part,
                 cuts_leading=True),
    # HunyuanImageTEModel: the same cut through QwenImageTEModel (a fixed 36 tokens for refiner prompts);
    # byT5 only adds a separate conditioning for quoted text
    _TextEncoder("HunyuanVideo 1.5 and HunyuanImage 2.1 (Qwen2.5-VL 7B + byT5)", "hunyuan_image",
                 "HunyuanImageTEModel", _own_part, cuts_leading=True),
    _TextEncoder("Z-Image (Qwen3 4B)", "z_image", "ZImageTEModel", _own_part),
    # OvisTEModel.encode_token_weights cuts its template up to the "background" and ":" before the text
    _TextEncoder("Ovis-Image (Ovis 2.5 2B)", "ovis", "OvisTEModel", _own_part, cuts_leading=True),
    _TextEncoder("Lumina 2 (Gemma 2 2B) and Gemma 3 4B single encoders", "lumina2", "LuminaModel", _own_part),
    # Krea2TEModel: twelve hidden layers side by side per token, Qwen-Image's template cut as there
    _TextEncoder("Krea 2 (Qwen3-VL 4B)", "krea2", "Krea2TEModel", _own_part, cuts_leading=True),
    _TextEncoder("Chroma / Chroma Radiance (T5-XXL)", "pixart_t5", "PixArtT5XXL", _own_part),
    _TextEncoder("Mochi and LTX-Video (T5-XXL)", "genmo", "MochiT5XXL", _own_part),
    _TextEncoder("CogVideoX (T5-XXL)", "cogvideo", "CogVideoXT5XXL", _own_part),
    _TextEncoder("AuraFlow (Pile T5-XL)", "aura_t5", "AuraT5Model", _own_part),
    _TextEncoder("Wan 2.x (umT5-XXL)", "wan", "WanT5Model", _own_part),
    # HunyuanVideoClipModel.encode_token_weights keeps the LLaMA rows from the user's text to its
    # <|eot_id|>, the template's last token; CLIP-L gives only the pooled vector
    _TextEncoder("HunyuanVideo 1.0 (LLaMA 3 8B + CLIP-L)", "hunyuan_video", "HunyuanVideoClipModel",
                 lambda m: ["llama"], cuts_leading=True),
    # LTXAVTEModel.encode_token_weights drops the left padding (out[:, :, -attention_mask.sum():])
    _TextEncoder("LTX-2 (Gemma 3 12B)", "lt", "LTXAVTEModel", lambda m: ["gemma3_12b"], cuts_leading=True),
    # NewBieTEModel returns the Gemma output as cond (Jina CLIP gives only the pooled vector)
    _TextEncoder("NewBie (Gemma 3 4B + Jina CLIP)", "newbie", "NewBieTEModel", lambda m: ["gemma"]),
)


def _text_encoder(model) -> _TextEncoder:
    for encoder in _TEXT_ENCODERS:
        if encoder.matches(model):
            return encoder
    raise ConceptAttentionError(
        f"Text encoder {type(model).__name__} is not supported for concept encoding. Supported: "
        f"{'; '.join(e.label for e in _TEXT_ENCODERS)}. Load the text encoder that belongs to your model "
        f"(CLIPLoader, DualCLIPLoader or TripleCLIPLoader with the model's type, or the checkpoint's own).")
