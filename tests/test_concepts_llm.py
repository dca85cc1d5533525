"""encode_concepts with the text encoders of the 2026 families (tiny, built through ComfyUI's own classes).

The independent derivation: tokenize the concept alone with the encoder's raw tokenizer, find those ids in the
prompt ComfyUI tokenizes (template and all), and read those rows of ComfyUI's own `encode_from_tokens` output,
where the encoder keeps every token; where it cuts the template's head off, the rows follow the rule read from
its encode_token_weights (how many template tokens it keeps before the user's text).
"""

from dataclasses import dataclass

import pytest
import torch

import tiny_encoders
from concept_attention.concepts import TokenSpan
from concept_attention.errors import ConceptAttentionError


@dataclass(frozen=True)
class Case:
    build: str            # tiny_encoders function
    variant: str | None   # its `variant` argument, where it has one
    part: str             # the tokenizer output that `cond` is made of
    width: int            # cond width the builder's docstring promises
    kept_before: int | None = None  # template tokens kept before the text where the encoder cuts the head off
    lead: str = ""        # what the template puts right before the text, tokenized with it

    def __str__(self):
        return self.build + (f"[{self.variant}]" if self.variant else "")

    def clip(self):
        build = getattr(tiny_encoders, self.build)
        return build(variant=self.variant) if self.variant else build()


CASES = [
    Case("tiny_klein_clip", "4b", "qwen3_4b", 96),
    Case("tiny_klein_clip", "9b", "qwen3_8b", 96),
    Case("tiny_zimage_clip", None, "qwen3_4b", 32),
    # QwenImageTEModel / Krea2TEModel keep cond from the user's text on
    Case("tiny_qwen_image_clip", None, "qwen25_7b", 32, kept_before=0),
    Case("tiny_hunyuan15_clip", None, "qwen25_7b", 32, kept_before=0),
    Case("tiny_krea2_clip", None, "qwen3vl_4b", 384, kept_before=0),
    # OvisTEModel keeps the template's ":" before the text; its template writes "background: {}"
    Case("tiny_ovis_clip", None, "qwen3_2b", 32, kept_before=1, lead=" "),
    Case("tiny_flux2_clip", None, "mistral3_24b", 96),
    Case("tiny_chroma_clip", None, "t5xxl", 32),
    Case("tiny_cogvideox_clip", None, "t5xxl", 32),
    Case("tiny_mochi_clip", None, "t5xxl", 32),
    Case("tiny_wan_clip", None, "umt5xxl", 32),
    Case("tiny_auraflow_clip", None, "pile_t5xl", 32),
    Case("tiny_lumina2_clip", None, "gemma2_2b", 32),
]


def raw_ids(clip, text):
    """The encoder's own tokenizer on `text` alone, without the special tokens it adds to any text."""
    tokenizer = getattr(clip.tokenizer, clip.tokenizer.clip).tokenizer  # inside ComfyUI's SD1Tokenizer wrapper
    added = set(tokenizer("")["input_ids"])
    return [i for i in tokenizer(text)["input_ids"] if i not in added]


def expected_rows(clip, case, word):
    """(cond, rows of the word's tokens in it): the word's ids found in the tokenized prompt (the last
    occurrence: the text comes after the template's opening, which may hold the same word)."""
    tokens = clip.tokenize(word)
    ids = [tok[0] for chunk in tokens[case.part] for tok in chunk]
    word_ids = raw_ids(clip, case.lead + word)
    k = len(word_ids)
    starts = [i for i in range(len(ids) - k + 1) if ids[i:i + k] == word_ids]
    assert starts, f"{word_ids} not in {ids}"
    start = starts[-1]
    cond = clip.encode_from_tokens(tokens)[0].float()
    if case.kept_before is None:
        assert len(cond) == len(ids)
    else:  # the head up to `kept_before` tokens before the text is cut off
        start, cut = case.kept_before, start - case.kept_before
        assert len(cond) == len(ids) - cut
    return cond, list(range(start, start + k))


@pytest.mark.host
@pytest.mark.parametrize("case", CASES, ids=str)
def test_concept_rows_are_its_own_word_tokens(case):
    from concept_attention import encode_concepts

    clip = case.clip()
    words = ["hummingbird", "Eiffel tower"]
    mean = encode_concepts(clip, words)
    first = encode_concepts(clip, words, token_mode="first_token")
    for i, word in enumerate(words):
        cond, rows = expected_rows(clip, case, word)
        assert len(rows) >= 2, f"{word!r} should fall into several pieces"
        assert cond.shape[1] == case.width
        torch.testing.assert_close(mean.embeddings[i], cond[rows].mean(0), rtol=0, atol=0)
        torch.testing.assert_close(first.embeddings[i], cond[rows[0]], rtol=0, atol=0)
        assert mean.spans[i] == first.spans[i] == TokenSpan(rows[0], rows[-1] + 1, len(cond))


@pytest.mark.host
@pytest.mark.parametrize("case", [c for c in CASES if c.build in ("tiny_zimage_clip", "tiny_qwen_image_clip")],
                         ids=str)
def test_a_template_word_as_concept_is_the_concepts_token(case):
    """"user" is also the chat template's turn opener ("<|im_start|>user\\n"), just before the concept."""
    from concept_attention import encode_concepts

    clip = case.clip()
    cond, rows = expected_rows(clip, case, "user")
    got = encode_concepts(clip, ["user"])
    torch.testing.assert_close(got.embeddings[0], cond[rows[0]], rtol=0, atol=0)
    if case.kept_before is None:  # the template's "user" row is in cond too, right before
        ids = [tok[0] for chunk in clip.tokenize("user")[case.part] for tok in chunk]
        assert ids[rows[0] - 2] == ids[rows[0]] and not torch.equal(cond[rows[0] - 2], got.embeddings[0])


@pytest.mark.host
def test_each_concept_is_encoded_alone_with_its_template():
    from concept_attention import encode_concepts

    clip = tiny_encoders.tiny_zimage_clip()
    together = encode_concepts(clip, ["dog", "hummingbird"])
    alone = encode_concepts(clip, ["hummingbird"])
    torch.testing.assert_close(together.embeddings[1], alone.embeddings[0], rtol=0, atol=0)
    assert together.spans[1] == alone.spans[0]


@pytest.mark.host
@pytest.mark.parametrize("build", ["tiny_lumina2_clip", "tiny_chroma_clip"])
def test_concept_without_word_tokens_is_an_error(build):
    from concept_attention import encode_concepts

    with pytest.raises(ConceptAttentionError, match="'\\(\\)' encodes to no word tokens"):
        encode_concepts(getattr(tiny_encoders, build)(), ["dog", "()"])  # empty weighting syntax


@pytest.mark.host
def test_unsupported_encoder_names_the_supported_ones():
    """PixelDiT's encoder is a Lumina 2 subclass whose own encode_token_weights keeps BOS and the last 299
    rows: the Lumina 2 facts do not hold for it, so it is refused rather than misread."""
    from comfy.text_encoders import pixeldit

    from concept_attention import encode_concepts

    clip = tiny_encoders.tiny_clip(
        pixeldit.PixelDiTGemma2Tokenizer, pixeldit.pixeldit_te(),
        {"gemma2_2b": {**tiny_encoders.LLM, "num_hidden_layers": 2, "vocab_size": 256}}, seed=0,
        tokenizer_data={"spiece_model": tiny_encoders.tiny_spiece(pad_id=0, eos_id=1, bos_id=2, unk_id=3)})
    with pytest.raises(ConceptAttentionError, match="PixelDiTTE_ is not supported.*Supported: .*Flux.2.*Qwen-Image"):
        encode_concepts(clip, ["dog"])
