"""Concept lists and their embeddings, with ComfyUI's real tokenizers (T5 and CLIP) and tiny encoders."""

import pytest
import torch

import host
from concept_attention.concepts import Concepts, parse_concepts
from concept_attention.errors import ConceptAttentionError

T5_SPECIAL = {0, 1}              # pad, EOS (T5 has no BOS)
CLIP_SPECIAL = {49406, 49407}    # BOS, EOS (= pad for CLIP-L)


@pytest.mark.parametrize("text", [
    "dog, grass, sky",
    "dog\ngrass\nsky",
    "dog,\ngrass,\nsky",          # commas and new lines together
    "dog\n\ngrass\n\n\nsky\n",    # blank lines between and after
    "dog, grass, sky,",            # trailing separator
    ",dog,, grass , ,sky",         # leading and doubled commas: a deleted word leaves ", ,"
    "  dog ,\r\n grass\t,\r\nsky  ",  # Windows line ends, tabs, spaces
])
def test_concept_lists_as_people_write_them(text):
    assert parse_concepts(text) == ["dog", "grass", "sky"]


def test_concept_names_keep_their_inner_spaces():
    assert parse_concepts("ice cream,\nhot  dog") == ["ice cream", "hot  dog"]


def test_concept_list_errors_say_what_is_wrong():
    with pytest.raises(ConceptAttentionError, match="No concepts"):
        parse_concepts(" ,\n, ")
    with pytest.raises(ConceptAttentionError, match=r"^Concept 'dog' appears twice \(numbers 1 and 3\)"):
        parse_concepts("dog, sky, dog")
    with pytest.raises(ConceptAttentionError, match=r"^Concepts 'dog' and 'DOG' \(numbers 1 and 2\) are the same "
                                                     r"concept: names are matched ignoring case"):
        parse_concepts("dog\nDOG")
    with pytest.raises(ConceptAttentionError, match="number 2 is empty"):
        Concepts(["dog", " "], torch.zeros(2, 4))  # a list given in code is taken as it is


def test_concepts_need_one_row_per_name():
    assert len(Concepts(["a", "b"], torch.zeros(2, 4))) == 2
    with pytest.raises(ConceptAttentionError, match="one embedding row per name"):
        Concepts(["a", "b"], torch.zeros(3, 4))


def own_rows(clip, text, key, special):
    """Independent derivation: the encoder output rows whose token id is not special."""
    ids = [tok[0] for chunk in clip.tokenize(text)[key] for tok in chunk]
    cond = clip.encode_from_tokens(clip.tokenize(text))[0].float()
    rows = [i for i, t in enumerate(ids) if t not in special]
    return cond, rows, ids


@pytest.mark.host
@pytest.mark.parametrize("word,pieces", [("hummingbird", 4), ("Eiffel tower", 3), ("a", 2), ("cat", 1)])
def test_t5_mean_over_word_pieces(word, pieces):
    from concept_attention import encode_concepts
    clip = host.tiny_flux_clip()
    cond, rows, _ = own_rows(clip, word, "t5xxl", T5_SPECIAL)
    assert len(rows) == pieces  # e.g. ['▁', 'h', 'umming', 'bird']
    mean = encode_concepts(clip, [word]).embeddings[0]
    first = encode_concepts(clip, [word], token_mode="first_token").embeddings[0]
    torch.testing.assert_close(mean, cond[rows].mean(0))
    torch.testing.assert_close(first, cond[0])  # the authors' choice: T5 output at position 0
    assert torch.allclose(mean, first) == (pieces == 1)


@pytest.mark.host
def test_clip_mean_over_word_tokens():
    from concept_attention import encode_concepts
    clip = host.tiny_sd3_clip()
    cond, rows, ids = own_rows(clip, "hummingbird", "l", CLIP_SPECIAL)
    assert ids[0] == 49406 and rows[0] == 1 and len(rows) >= 1
    got = encode_concepts(clip, ["hummingbird", "Eiffel tower"])
    torch.testing.assert_close(got.embeddings[0], cond[rows].mean(0))
    torch.testing.assert_close(encode_concepts(clip, ["hummingbird"], token_mode="first_token").embeddings[0],
                               cond[rows[0]])
    assert got.embeddings.shape == (2, 4096)  # SD3 pads CLIP features to T5's width


@pytest.mark.host
def test_each_concept_is_encoded_alone():
    from concept_attention import encode_concepts
    clip = host.tiny_flux_clip()
    together = encode_concepts(clip, ["dog", "grass"]).embeddings
    torch.testing.assert_close(together[1], encode_concepts(clip, ["grass"]).embeddings[0])


@pytest.mark.host
@pytest.mark.parametrize("make_clip", [host.tiny_flux_clip, host.tiny_sd3_clip])
def test_concept_without_word_tokens_is_an_error(make_clip):
    from concept_attention import encode_concepts
    with pytest.raises(ConceptAttentionError, match="'\\(\\)' encodes to no word tokens"):
        encode_concepts(make_clip(), ["dog", "()"])  # ComfyUI reads "()" as empty weighting syntax
