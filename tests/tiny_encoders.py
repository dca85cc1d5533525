"""Tiny text encoders of the 2026 model families, built through ComfyUI's own tokenizer and encoder classes.

Each `tiny_*_clip(seed)` returns a `comfy.sd.CLIP` whose tokenizer, chat template, hidden-layer taps and
`encode_token_weights` are ComfyUI's own; only the language model is shrunk (hidden size 32, a few layers: the
layer count is kept where the encoder taps fixed hidden layers) through `model_options["<name>_model_config"]`.
The cond width each returns is in its docstring (a tiny diffusion model's text input width must match it).

Vocabularies: Qwen2/2.5/3 and T5 use the tokenizer files ComfyUI ships; Gemma and umT5 get a small
SentencePiece model trained here, and Mistral's tekken vocabulary (carried in the model file) a small byte-level
BPE made here. Nothing is downloaded. Vision towers stay uninitialised: concept text never reaches them.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import inspect
import io
import json
import tempfile

import torch

from host import init_weights

LLM = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1)
T5 = dict(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16)

# Words the test vocabularies know; others (e.g. "hummingbird") fall into several pieces.
CORPUS = ["a cat on a sofa by the window", "a dog in the grass under the sky", "the tower of a city",
          "a red bird and a blue bird", "the Eiffel tower at night", "humming music in the room",
          "a woman with a hat", "a small boat on the sea", "trees and flowers in a garden"] * 4


def tiny_clip(tokenizer, te, configs: dict, seed: int, tokenizer_data: dict | None = None):
    """`comfy.sd.CLIP(ClipTarget(tokenizer, te))` with each `configs[name]` merged over the ComfyUI config of the encoder called `name`."""
    import comfy.sd
    import comfy.supported_models_base

    clip = comfy.sd.CLIP(target=comfy.supported_models_base.ClipTarget(tokenizer, te),
                         tokenizer_data=tokenizer_data or {},
                         model_options={f"{name}_model_config": cfg for name, cfg in configs.items()})
    for i, trunk in enumerate(_language_models(clip.cond_stage_model)):
        init_weights(trunk, seed + i)
    return clip


def _language_models(encoder) -> list[torch.nn.Module]:
    """The text transformers inside an encoder (an LLM's `model`, without its vision tower; or a whole T5)."""
    from comfy.sd1_clip import SDClipModel

    return [getattr(m.transformer, "model", m.transformer) for m in encoder.modules() if isinstance(m, SDClipModel)]


# ---- Qwen3 (Flux.2 Klein, Z-Image), Qwen2.5-VL (Qwen-Image, HunyuanVideo 1.5), Qwen3-VL (Krea 2) ----

def tiny_klein_clip(seed: int = 0, variant: str = "4b", min_length: int = 64):
    """Flux.2 Klein (`supported_models.Flux2`, Qwen3 4B for "4b", Qwen3 8B for "9b"): KleinTokenizer's chat template
    padded to `min_length` tokens (ComfyUI pads to 512; the tiny sets less through tokenizer_data's
    "<name>_min_length", the key ComfyUI reads, to stay fast), cond = hidden layers 9, 18, 27 side by side:
    width 3 x 32 = 96 (28 layers)."""
    from comfy.text_encoders import flux

    name, tokenizer = {"4b": ("qwen3_4b", flux.KleinTokenizer), "9b": ("qwen3_8b", flux.KleinTokenizer8B)}[variant]
    return tiny_clip(tokenizer, flux.klein_te(model_type=name), {name: {**LLM, "num_hidden_layers": 28}}, seed,
                     tokenizer_data={f"{name}_min_length": min_length})


def tiny_zimage_clip(seed: int = 0):
    """Z-Image / Z-Image Turbo (`supported_models.ZImage`, Qwen3 4B): chat template, cond = the second-to-last
    hidden layer: width 32 (3 layers)."""
    from comfy.text_encoders import z_image

    return tiny_clip(z_image.ZImageTokenizer, z_image.te(), {"qwen3_4b": {**LLM, "num_hidden_layers": 3}}, seed)


def tiny_qwen_image_clip(seed: int = 0):
    """Qwen-Image / Qwen-Image-Edit (`supported_models.QwenImage`, Qwen2.5-VL 7B): cond = the last hidden layer
    from the user's text on (the system prompt is cut off): width 32 (2 layers)."""
    from comfy.text_encoders import qwen_image

    return tiny_clip(qwen_image.QwenImageTokenizer, qwen_image.te(), {"qwen25_7b": {**LLM, "num_hidden_layers": 2}},
                 seed)


def tiny_hunyuan15_clip(seed: int = 0):
    """HunyuanVideo 1.5 (`supported_models.HunyuanVideo15`, Qwen2.5-VL 7B; built without byT5, as CLIPLoader's
    hunyuan_image type does: byT5 only adds `conditioning_byt5small` for quoted text): cond = hidden layer -3 from
    the user's text on: width 32 (4 layers)."""
    from comfy.text_encoders import hunyuan_image, hunyuan_video

    return tiny_clip(hunyuan_video.HunyuanVideo15Tokenizer, hunyuan_image.te(byt5=False),
                 {"qwen25_7b": {**LLM, "num_hidden_layers": 4}}, seed)


def tiny_krea2_clip(seed: int = 0):
    """Krea 2 (`supported_models.Krea2`, Qwen3-VL 4B): Qwen-Image's template, cut the same way; cond = the
    twelve tapped hidden layers 2, 5, ..., 35 side by side: width 12 x 32 = 384 (36 layers)."""
    from comfy.text_encoders import krea2

    return tiny_clip(krea2.Krea2Tokenizer, krea2.te(), {"qwen3vl_4b": {**LLM, "num_hidden_layers": 36}}, seed)


def tiny_ovis_clip(seed: int = 0):
    """Ovis-Image (`comfy.text_encoders.ovis`, Ovis 2.5 2B, Qwen3-like): template padded to 284 tokens, cond = the
    last hidden layer from the template's "background:" on (padding rows zeroed): width 32 (2 layers)."""
    from comfy.text_encoders import ovis

    return tiny_clip(ovis.OvisTokenizer, ovis.te(), {"qwen3_2b": {**LLM, "num_hidden_layers": 2}}, seed)


# ---- Mistral 3 Small (Flux.2 dev) ----

MISTRAL_SPECIALS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]",
                    "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
                    "[TOOL_CONTENT]"]  # Mistral's special-token ranks: <s> is 1 and <pad> 11, as Flux2Tokenizer expects
# Mistral's published tekken pre-tokenizer pattern
TEKKEN_PATTERN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?"
                  r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")


def tiny_tekken() -> bytes:
    """A tekken.json (the format Flux.2's text encoder file carries as `tekken_model`): every byte, then every
    prefix of the corpus words (each splits into a known token and one byte, so BPE can build it)."""
    pieces = [bytes([b]) for b in range(256)]
    for word in sorted({w for line in CORPUS for w in line.split()} | {"You", "AI", "image", "object"}):
        for text in (word, " " + word):
            raw = text.encode()
            pieces += [raw[:n] for n in range(2, len(raw) + 1) if raw[:n] not in pieces]
    return json.dumps({
        "config": {"pattern": TEKKEN_PATTERN, "default_vocab_size": len(MISTRAL_SPECIALS) + len(pieces),
                   "default_num_special_tokens": len(MISTRAL_SPECIALS)},
        "special_tokens": [{"rank": i, "token_str": s, "is_control": True} for i, s in enumerate(MISTRAL_SPECIALS)],
        "vocab": [{"rank": i, "token_bytes": base64.b64encode(p).decode()} for i, p in enumerate(pieces)],
    }).encode()


def tiny_flux2_clip(seed: int = 0):
    """Flux.2 dev (`supported_models.Flux2`, Mistral 3 Small 24B): Flux2Tokenizer's system-prompt template (BOS,
    no padding), cond = hidden layers 10, 20, 30 side by side: width 3 x 32 = 96 (31 layers, tiny tekken)."""
    from comfy.text_encoders import flux

    tekken = tiny_tekken()
    with _tekken_loader_for_installed_transformers():
        return tiny_clip(flux.Flux2Tokenizer, flux.flux2_te(),
                     {"mistral3_24b": {**LLM, "num_hidden_layers": 31, "vocab_size": 512}}, seed,
                     tokenizer_data={"tekken_model": torch.frombuffer(bytearray(tekken), dtype=torch.uint8)})


@contextlib.contextmanager
def _tekken_loader_for_installed_transformers():
    """ComfyUI 0.25's `flux.load_mistral_tokenizer` calls `MistralConverter(vocab=..., ...)`; transformers 5 takes
    a tekken.json path instead (`MistralConverter(vocab_file)`), so with it ComfyUI cannot read any Flux.2 dev text
    encoder. While the tokenizer is built, and only where the installed transformers needs it, this feeds the
    same tekken data to transformers' own converter; every other part of Mistral3Tokenizer stays ComfyUI's."""
    from unittest import mock

    from comfy.text_encoders import flux
    from transformers.integrations.mistral import MistralConverter

    if "vocab_file" not in inspect.signature(MistralConverter.__init__).parameters:
        yield
        return

    def load(data):
        with tempfile.NamedTemporaryFile("wb", suffix=".json") as f:
            f.write(data.numpy().tobytes() if torch.is_tensor(data) else data)
            f.flush()
            return {"tokenizer_object": MistralConverter(vocab_file=f.name).converted(), "legacy": False}

    with mock.patch.object(flux, "load_mistral_tokenizer", load):
        yield


# ---- T5 (Chroma, CogVideoX, Mochi), umT5 (Wan) ----

def tiny_chroma_clip(seed: int = 0):
    """Chroma / Chroma Radiance (`supported_models.Chroma`, T5-XXL through PixArt's encoder): no padding (min
    length 1), EOS at the end, cond = the T5 output: width 32."""
    from comfy.text_encoders import pixart_t5

    return tiny_clip(pixart_t5.PixArtTokenizer, pixart_t5.pixart_te(), {"t5xxl": T5}, seed)


def tiny_cogvideox_clip(seed: int = 0):
    """CogVideoX (`supported_models.CogVideoX_T2V`; CLIPLoader's cogvideox type): T5-XXL padded to 226 tokens,
    cond = the T5 output: width 32."""
    from comfy.text_encoders import cogvideo

    return tiny_clip(cogvideo.CogVideoXTokenizer, cogvideo.cogvideo_te(), {"t5xxl": T5}, seed)


def tiny_mochi_clip(seed: int = 0):
    """Mochi (`supported_models.GenmoMochi`; LTX-Video uses the same encoder): T5-XXL padded to 256 tokens with
    an attention mask, cond = the T5 output: width 32."""
    from comfy.text_encoders import genmo

    return tiny_clip(genmo.MochiT5Tokenizer, genmo.mochi_te(), {"t5xxl": T5}, seed)


def tiny_wan_clip(seed: int = 0):
    """Wan 2.x (`supported_models.WAN21_T2V` and its successors, umT5-XXL): padded to 512 tokens, padding rows
    zeroed, cond = the umT5 output: width 32 (tiny SentencePiece vocabulary)."""
    from comfy.text_encoders import wan

    spiece = tiny_spiece(pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    return tiny_clip(wan.WanT5Tokenizer, wan.te(), {"umt5xxl": {**T5, "vocab_size": 256}}, seed,
                 tokenizer_data={"spiece_model": spiece})


def tiny_auraflow_clip(seed: int = 0):
    """AuraFlow (`supported_models.AuraFlow`, Pile T5-XL with the SentencePiece vocabulary ComfyUI ships): padded to
    256 tokens, padding rows zeroed, cond = the T5 output: width 32."""
    from comfy.text_encoders import aura_t5

    return tiny_clip(aura_t5.AuraT5Tokenizer, aura_t5.AuraT5Model, {"pile_t5xl": T5}, seed)


# ---- Gemma 2 (Lumina 2) ----

def tiny_lumina2_clip(seed: int = 0):
    """Lumina 2 (`supported_models.Lumina2`, Gemma 2 2B): BOS then the text (no template in the tokenizer; the
    CLIPTextEncodeLumina2 node prepends a system prompt as text), cond = the second-to-last hidden layer:
    width 32 (3 layers, tiny SentencePiece vocabulary with Gemma's special ids)."""
    from comfy.text_encoders import lumina2

    spiece = tiny_spiece(pad_id=0, eos_id=1, bos_id=2, unk_id=3)
    return tiny_clip(lumina2.LuminaTokenizer, lumina2.te(),
                 {"gemma2_2b": {**LLM, "num_hidden_layers": 3, "vocab_size": 256}}, seed,
                 tokenizer_data={"spiece_model": spiece})


@functools.lru_cache(maxsize=None)
def tiny_spiece(**special_ids) -> bytes:
    """A small SentencePiece BPE model (serialized) trained on CORPUS, with the given special-token ids."""
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=out, model_type="bpe", vocab_size=120,
        hard_vocab_limit=False, num_threads=1, minloglevel=2, **special_ids)
    return out.getvalue()
