"""attach() on tiny LongCat-Image and Ovis-Image models built through ComfyUI's classes, driven through its
samplers, against the plainly written masked forward of reference_flux2.py (per-block softmax, the paper's rule)."""

import pytest
import torch

import host
import reference_flux2 as ref
import tiny_longcat
from tiny_longcat import TEXT_WIDTH, prompt

pytestmark = pytest.mark.host

NAMES = ["dog", "grass", "sky"]
# The concept's rows in its own encoding (LongCat's encoder drops the template head and pads the prompt to 512),
# and SPEC.md's positions for them, by hand: the last word token's row.
SPANS = [(0, 1, 512), (0, 2, 512), (0, 1, 512)]
POSITIONS = [0, 1, 0]


@pytest.fixture(scope="module", params=["longcat", "ovis"])
def model(request):
    return tiny_longcat.tiny_longcat(seed=0) if request.param == "longcat" else tiny_longcat.tiny_ovis(seed=1)


def make_concepts(spans=SPANS, seed=12):
    from concept_attention import Concepts
    from concept_attention.concepts import TokenSpan
    embeddings = torch.randn(len(NAMES), TEXT_WIDTH, generator=torch.Generator().manual_seed(seed))
    return Concepts(NAMES, embeddings, None if spans is None else [TokenSpan(*s) for s in spans])


def sample_recording(model, patched, positive, negative, latent, **kw):
    inputs = ref.Flux2BlockInputs(model.model.diffusion_model)
    try:
        out = host.sample(patched, positive, negative, latent, **kw)
    finally:
        inputs.remove()
    return out, inputs.calls


def expected(model, calls, concepts, blocks, steps, positions=POSITIONS, timestep=None):
    """The paper's rule: softmax over concepts per block and step, then the mean."""
    dm = model.model.diffusion_model

    def per_call(call):
        scores = ref.masked_forward_scores(dm, call, concepts.embeddings, positions, blocks, timestep)
        return {b: torch.softmax(s, dim=-1) for b, s in scores.items()}
    return ref.expected_maps(calls, per_call, blocks, steps, None, patch_size=2)


def test_models_are_what_the_tests_claim(model):
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.flux import FluxAdapter
    from concept_attention.adapters.flux2 import Flux2Adapter
    assert type(adapter_for(model)).__name__ == "SequentialTextFluxAdapter"
    assert not FluxAdapter.supports(model.model) and not Flux2Adapter.supports(model.model)
    dm = model.model.diffusion_model
    assert list(dm.params.txt_ids_dims) == [1, 2] and dm.vector_in is None
    if type(model.model).__name__ == "Flux":  # Ovis
        assert dm.txt_norm is not None and type(dm.double_blocks[0].txt_mlp).__name__ == "YakMLP"
    else:
        assert type(model.model).__name__ == "LongCatImage"


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_maps_equal_the_masked_forward_and_the_image_is_unchanged(model, cfg):
    from concept_attention import attach
    concepts = make_concepts()
    blocks, steps = [0, 2], [0, 1, 2]
    patched, recorder = attach(model, concepts, layers=blocks)
    positive, negative = prompt(12, seed=5), prompt(12, seed=6)
    out, calls = sample_recording(model, patched, positive, negative, tiny_longcat.latent(), cfg=cfg, steps=3)
    assert torch.equal(out, host.sample(model, positive, negative, tiny_longcat.latent(), cfg=cfg, steps=3))
    maps = recorder.maps()
    assert maps.shape == (2, 3, 4, 5)
    torch.testing.assert_close(maps, expected(model, calls, concepts, blocks, steps), rtol=1e-4, atol=1e-5)
    assert maps.std(dim=(2, 3)).min() > 1e-2, "the maps vary across tokens"
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows stay separate"


def test_concepts_sit_at_their_text_position_and_take_the_timestep_modulation(model):
    from concept_attention import attach
    from concept_attention.adapters.flux2 import concept_positions
    assert concept_positions(make_concepts()) == POSITIONS
    assert concept_positions(make_concepts([(5, 7, 40)] * 3)) == [6, 6, 6]  # no padding on these models
    concepts = make_concepts()
    patched, recorder = attach(model, concepts, layers=[1, 2])
    _, calls = sample_recording(model, patched, prompt(12, seed=5), prompt(12, seed=6), tiny_longcat.latent(batch=1),
                                cfg=2.0, steps=3)
    maps = recorder.maps()
    steps = [0, 1, 2]
    torch.testing.assert_close(maps, expected(model, calls, concepts, [1, 2], steps), rtol=1e-4, atol=1e-5)
    for other in (expected(model, calls, concepts, [1, 2], steps, positions=[6, 6, 6]),
                  expected(model, calls, concepts, [1, 2], steps, timestep=0.5)):
        assert not torch.allclose(maps, other, atol=1e-3)


def test_reference_images_stay_out_of_the_maps(model):
    from concept_attention import attach
    concepts = make_concepts()
    reference_latent = torch.randn(1, 16, 4, 6, generator=torch.Generator().manual_seed(9))
    extra = {"reference_latents": [reference_latent]}
    positive, negative = prompt(12, seed=5, **extra), prompt(12, seed=6, **extra)
    latent = tiny_longcat.latent(batch=1, h=8, w=12)
    patched, recorder = attach(model, concepts, layers=[1, 2])
    out, calls = sample_recording(model, patched, positive, negative, latent, cfg=2.0, steps=2)
    assert torch.equal(out, host.sample(model, positive, negative, latent, cfg=2.0, steps=2))
    assert calls[0]["blocks"][0]["img"].shape[1] == 4 * 6 + 2 * 3  # generated, then reference tokens
    assert recorder.maps().shape == (1, 3, 4, 6)
    torch.testing.assert_close(recorder.maps(), expected(model, calls, concepts, [1, 2], [0, 1]), rtol=1e-4, atol=1e-5)


def test_from_image_stops_after_the_last_needed_block(model):
    from concept_attention.from_image import maps_from_latent
    dm = model.model.diffusion_model
    seen = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen.append(("double", i)))
               for i, b in enumerate(dm.double_blocks)]
    handles += [b.register_forward_pre_hook(lambda m, a, i=i: seen.append(("single", i)))
                for i, b in enumerate(dm.single_blocks)]
    try:
        result = maps_from_latent(model, make_concepts(), tiny_longcat.latent(batch=1), prompt(12), layers=[1])
    finally:
        for h in handles:
            h.remove()
    assert seen == [("double", 0), ("double", 1)]
    assert result.maps.shape == (1, 3, 4, 5)


def test_defaults_and_errors(model):
    from concept_attention import Concepts, attach
    from concept_attention.adapters import adapter_for, supported_text
    from concept_attention.errors import ConceptAttentionError
    adapter = adapter_for(model)
    assert adapter.default_blocks() == [2] and adapter.default_steps(20) is None
    assert adapter.softmax_temperature is None
    assert "LongCat-Image / Ovis-Image (LongCat-Image, LongCat-Image-Edit" in supported_text()
    with pytest.raises(ConceptAttentionError, match=r"Block index 3 is out of range.*LongCat.*valid indices are 0-2"):
        attach(model, make_concepts(), layers=[3])
    with pytest.raises(ConceptAttentionError, match=f"width {TEXT_WIDTH}"):
        attach(model, Concepts(["a"], torch.zeros(1, 7)))


def test_concepts_encoded_by_the_tiny_ovis_encoder():
    """encode_concepts with ComfyUI's own Ovis tokenizer and template (a tiny language model): the encoder's output
    starts at the template's ":" before the prompt, so a one-token word is row 1, its text position."""
    tiny_encoders = pytest.importorskip("tiny_encoders", reason="tests/tiny_encoders.py (branch encoders) absent")
    from concept_attention import attach, encode_concepts
    from concept_attention.adapters.flux2 import concept_positions
    clip = tiny_encoders.tiny_ovis_clip()
    model = tiny_longcat.tiny_ovis(seed=4)
    concepts = encode_concepts(clip, ["cat", "dog"])
    assert concept_positions(concepts) == [1, 1]
    patched, recorder = attach(model, concepts, layers=[0, 2])
    _, calls = sample_recording(model, patched, host.conditioning(clip, "a cat and a dog"), host.conditioning(clip, ""),
                                tiny_longcat.latent(batch=1), cfg=2.0, steps=2)
    torch.testing.assert_close(recorder.maps(), expected(model, calls, concepts, [0, 2], [0, 1], positions=[1, 1]),
                               rtol=1e-4, atol=1e-5)
