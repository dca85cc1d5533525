"""Concept lists and their text-encoder embeddings.

A concept enters the diffusion model like a prompt token: its embedding lives in the text encoder's output
space (before the model's own text input path), one row per concept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .errors import ConceptAttentionError

TOKEN_MODES = ("mean", "first_token")


@dataclass(frozen=True)
class TokenSpan:
    """Where a concept's own word tokens sit in its standalone encoding: rows [start, stop) of the encoder
    output, which has `length` rows in all (as this encoder returns them: template, special and padding
    tokens included).
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
    """Encode each concept alone with a ComfyUI CLIP object.

    token_mode "mean" averages the encoder outputs over the concept's own word tokens (no BOS/EOS/padding);
    "first_token" takes the first of them, the authors' choice (for T5 often a bare word-piece).
    """
    if token_mode not in TOKEN_MODES:
        raise ConceptAttentionError(f"token_mode must be one of {TOKEN_MODES}, got {token_mode!r}.")
    names = check_names(list(names))
    rows, spans = zip(*(_encode_one(clip, name, token_mode) for name in names))
    return Concepts(names, torch.stack(rows), spans)


def _encode_one(clip, name: str, token_mode: str) -> tuple[torch.Tensor, TokenSpan]:
    tokens = clip.tokenize(name, return_word_ids=True)
    positions, expected_len = _word_positions(clip.cond_stage_model, tokens)
    if not positions:
        raise ConceptAttentionError(
            f"Concept {name!r} encodes to no word tokens with this text encoder. Use a word or phrase.")
    cond = clip.encode_from_tokens(tokens)[0].float()  # [L, ctx]
    if cond.shape[0] != expected_len:
        raise ConceptAttentionError(
            f"Unexpected text-encoder output for {name!r}: {cond.shape[0]} tokens where the tokenizer gave "
            f"{expected_len}. This text encoder ({type(clip.cond_stage_model).__name__}) is not supported.")
    picked = cond[positions[:1]] if token_mode == "first_token" else cond[positions]
    return picked.mean(dim=0).cpu(), TokenSpan(positions[0], positions[-1] + 1, expected_len)


def _word_positions(encoder, tokens: dict) -> tuple[list[int], int]:
    """Rows of the encoder's `cond` output that hold the concept's own word tokens, and its total length."""
    positions: list[int] = []
    offset = 0
    for key in _cond_parts(encoder, tokens):
        flat = [tok for chunk in tokens[key] for tok in chunk]
        positions += [offset + i for i, tok in enumerate(flat) if tok[2] != 0]
        offset += len(flat)
    return positions, offset


def _cond_parts(encoder, tokens: dict) -> list[str]:
    """Which tokenizers' outputs make up `cond`, in order along the token axis."""
    from comfy.text_encoders import flux, sd3_clip

    if isinstance(encoder, flux.FluxClipModel):
        return ["t5xxl"]
    if isinstance(encoder, sd3_clip.SD3ClipModel):
        parts = []
        if encoder.clip_l is not None or encoder.clip_g is not None:
            parts.append("l" if encoder.clip_l is not None else "g")
        if encoder.t5xxl is not None:
            parts.append("t5xxl")
        return parts
    if len(tokens) == 1:
        return list(tokens)
    raise ConceptAttentionError(
        f"Text encoder {type(encoder).__name__} is not supported for concept encoding. Supported: the Flux.1 "
        f"encoders (CLIP-L + T5-XXL) and the SD3/SD3.5 encoders (CLIP-L, CLIP-G, T5-XXL); load them with "
        f"DualCLIPLoader or TripleCLIPLoader.")
