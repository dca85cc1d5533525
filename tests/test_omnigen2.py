"""attach() on a tiny OmniGen2 (ComfyUI's OmniGen2Transformer2DModel, reached through the model-wide attention
override), driven through ComfyUI's samplers and compared with the masked forward of tests/reference_omnigen2.py."""

import pytest
import torch

import host
import reference
import tiny_omnigen2
from concept_attention.concepts import TokenSpan
from reference_omnigen2 import OmniGen2LayerInputs, masked_forward, omnigen2_reference

pytestmark = pytest.mark.host

# as if each concept were encoded alone behind 4 tokens of chat template
SPANS = (TokenSpan(4, 5, 8), TokenSpan(4, 6, 9), TokenSpan(4, 5, 8))


@pytest.fixture(scope="module")
def omnigen2():
    return tiny_omnigen2.tiny_omnigen2(seed=0)


@pytest.fixture(scope="module")
def concepts(omnigen2):
    return tiny_omnigen2.random_concepts(omnigen2, ["cat", "sofa", "window"], spans=SPANS)


def noise_latent(batch=2, h=8, w=10, seed=3):
    return torch.randn(batch, 16, h, w, generator=torch.Generator().manual_seed(seed))


def record(model, run):
    rec = OmniGen2LayerInputs(model.model.diffusion_model)
    try:
        out = run()
    finally:
        rec.remove()
    return out, rec.calls


def reference_maps(model, calls, concepts, layers, position=(4, 4, 4)):
    dm = model.model.diffusion_model
    return reference.expected_maps(
        calls, lambda call: omnigen2_reference(dm, call, concepts.embeddings, layers, position), layers)


def test_model_is_what_the_test_claims(omnigen2):
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.base import last_quarter
    from concept_attention.adapters.omnigen2 import OmniGen2Adapter

    dm = omnigen2.model.diffusion_model
    assert type(omnigen2.model).__name__ == "Omnigen2" and len(dm.layers) == 4 and len(dm.context_refiner) == 1
    assert dm.layers[0].attn.kv_heads < dm.layers[0].attn.heads  # grouped-query attention
    adapter = adapter_for(omnigen2)
    assert type(adapter) is OmniGen2Adapter and adapter.default_blocks() == [3] and adapter.text_width == 48
    assert last_quarter(32) == list(range(24, 32)) and "24-31 of 32" in OmniGen2Adapter.default_blocks_text


@pytest.mark.parametrize("cfg,layers", [(1.0, [1, 3]), (3.0, [0, 2]), (3.0, None)])
def test_maps_equal_the_masked_forward(omnigen2, concepts, cfg, layers):
    from concept_attention import attach
    patched, recorder = attach(omnigen2, concepts, layers=layers)
    positive = tiny_omnigen2.conditioning(omnigen2, 6, seed=1)
    negative = tiny_omnigen2.conditioning(omnigen2, 4, seed=2)
    _, calls = record(omnigen2, lambda: host.sample(patched, positive, negative, noise_latent(), cfg=cfg))
    maps = recorder.maps()
    assert maps.shape == (2, 3, 4, 5)
    torch.testing.assert_close(maps, reference_maps(omnigen2, calls, concepts, layers or [3]), rtol=1e-4, atol=1e-5)
    assert maps.std(dim=(2, 3)).min() > 1e-2, "the maps vary across tokens"
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows stay separate"


def test_reference_images_stay_out_of_the_maps(omnigen2, concepts):
    """Edit mode: two reference latents sit between the prompt and the image; concepts never see their keys, the
    maps cover the generated image only, and the image is untouched."""
    from concept_attention import attach
    refs = [torch.randn(1, 16, 6, 6, generator=torch.Generator().manual_seed(s)) for s in (20, 21)]
    positive = tiny_omnigen2.conditioning(omnigen2, 6, seed=1, reference_latents=refs)
    negative = tiny_omnigen2.conditioning(omnigen2, 6, seed=2, reference_latents=refs)
    patched, recorder = attach(omnigen2, concepts, layers=[1, 3])
    image, calls = record(omnigen2, lambda: host.sample(patched, positive, negative, noise_latent(), cfg=2.0))
    assert calls[0]["reference_hw"] == [(6, 6), (6, 6)]
    assert torch.equal(image, host.sample(omnigen2, positive, negative, noise_latent(), cfg=2.0))
    maps = recorder.maps()
    assert maps.shape == (2, 3, 4, 5)
    torch.testing.assert_close(maps, reference_maps(omnigen2, calls, concepts, [1, 3]), rtol=1e-4, atol=1e-5)


def test_masked_forward_is_the_models_own_forward(omnigen2, concepts):
    refs = [torch.randn(1, 16, 6, 4, generator=torch.Generator().manual_seed(20))]
    positive = tiny_omnigen2.conditioning(omnigen2, 6, seed=1, reference_latents=refs)
    _, calls = record(omnigen2, lambda: host.sample(omnigen2, positive, positive, noise_latent(), cfg=1.0, steps=2))
    dm, C = omnigen2.model.diffusion_model, len(concepts)
    for call in calls:
        results, _ = masked_forward(dm, call, concepts.embeddings, 2, (4, 4, 4))
        for i, (_, out) in enumerate(results):
            torch.testing.assert_close(out[:, :-C], call["layers"][i + 1]["x"], rtol=1e-4, atol=1e-4)


def test_image_is_bit_identical(omnigen2, concepts):
    from concept_attention import attach
    positive = tiny_omnigen2.conditioning(omnigen2, 6, seed=1)
    negative = tiny_omnigen2.conditioning(omnigen2, 6, seed=2)
    for cfg, layers in ((1.0, None), (4.0, [0, 1, 2, 3])):
        patched, _ = attach(omnigen2, concepts, layers=layers)
        assert torch.equal(host.sample(patched, positive, negative, noise_latent(seed=5), cfg=cfg),
                           host.sample(omnigen2, positive, negative, noise_latent(seed=5), cfg=cfg))


def test_concepts_take_their_words_text_position(omnigen2, concepts):
    """A concept sits at its first word token's index in its own encoding, or at 0 without a span."""
    from concept_attention import Concepts, attach
    positive = tiny_omnigen2.conditioning(omnigen2, 6, seed=1)
    patched, recorder = attach(omnigen2, concepts, layers=[1, 2])
    _, calls = record(omnigen2, lambda: host.sample(patched, positive, positive, noise_latent(), cfg=1.0))
    torch.testing.assert_close(recorder.maps(), reference_maps(omnigen2, calls, concepts, [1, 2]),
                               rtol=1e-4, atol=1e-5)
    assert not torch.allclose(recorder.maps(), reference_maps(omnigen2, calls, concepts, [1, 2], (0, 0, 0)),
                              atol=1e-3)

    spanless = Concepts(concepts.names, concepts.embeddings)
    patched, recorder = attach(omnigen2, spanless, layers=[1, 2])
    _, calls = record(omnigen2, lambda: host.sample(patched, positive, positive, noise_latent(), cfg=1.0))
    torch.testing.assert_close(recorder.maps(), reference_maps(omnigen2, calls, spanless, [1, 2], (0, 0, 0)),
                               rtol=1e-4, atol=1e-5)


def test_concept_stream_sees_nothing_of_the_prompt(omnigen2, concepts):
    """At layer 0 the image queries (after the noise refiner) and the concept keys depend on the image, the
    timestep and the concepts only. Raw cross-attention scores there are the same under any prompt of the same
    length (the image's rotary positions follow the prompt's length): no prompt-derived modulation, a context
    refiner without the prompt. And a concept's scores do not depend on the other concepts: the context refiner
    runs one concept at a time."""
    from concept_attention import Concepts
    from concept_attention.from_image import maps_from_latent

    def layer0_scores(concept_set, prompt):
        return maps_from_latent(omnigen2, concept_set, noise_latent(1), prompt, layers=[0], space="cross_attention",
                                softmax=False).maps

    scores = layer0_scores(concepts, tiny_omnigen2.conditioning(omnigen2, 6, seed=1))
    torch.testing.assert_close(layer0_scores(concepts, tiny_omnigen2.conditioning(omnigen2, 6, seed=7)), scores,
                               rtol=1e-5, atol=1e-5)
    other = tiny_omnigen2.random_concepts(omnigen2, ["dog"], seed=12).embeddings[0]
    with_dog = Concepts(["cat", "dog"], torch.stack([concepts.embeddings[0], other]), SPANS[:2])
    torch.testing.assert_close(layer0_scores(with_dog, tiny_omnigen2.conditioning(omnigen2, 6, seed=1))[:, 0],
                               scores[:, 0], rtol=1e-5, atol=1e-5)
    assert scores.std(dim=(2, 3)).min() > 1e-2


def test_from_image_stops_after_the_last_layer(omnigen2, concepts):
    from concept_attention.from_image import maps_from_latent
    dm = omnigen2.model.diffusion_model
    seen = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen.append(i)) for i, b in enumerate(dm.layers)]
    handles.append(dm.norm_out.register_forward_pre_hook(lambda m, a: seen.append("out")))
    try:
        result, calls = record(omnigen2, lambda: maps_from_latent(
            omnigen2, concepts, noise_latent(2, seed=8), tiny_omnigen2.conditioning(omnigen2, 4, seed=1),
            layers=[1], samples=2))
    finally:
        for h in handles:
            h.remove()
    assert seen == [0, 1, 0, 1]
    expected = sum(reference.expected_maps([call], lambda c: omnigen2_reference(dm, c, concepts.embeddings, [1],
                                                                                (4, 4, 4)), [1])
                   for call in calls) / 2
    torch.testing.assert_close(result.maps, expected, rtol=1e-4, atol=1e-5)
    assert result.image_size == (64, 80)


def test_another_packs_attention_override_keeps_running(omnigen2, concepts):
    from concept_attention import attach
    seen = {"calls": 0}

    def foreign_override(func, *args, **kwargs):
        seen["calls"] += 1
        return func(*args, **kwargs)

    other = omnigen2.clone()
    other.model_options["transformer_options"]["optimized_attention_override"] = foreign_override
    positive = tiny_omnigen2.conditioning(omnigen2, 6, seed=1)
    negative = tiny_omnigen2.conditioning(omnigen2, 6, seed=2)
    image = host.sample(other, positive, negative, noise_latent(1), cfg=2.0)
    without_us = seen["calls"]
    assert without_us == 3 * (1 + 1 + 4)  # 3 steps, one batched call each: context and noise refiners, 4 layers
    patched, recorder = attach(other, concepts, layers=[1, 2])
    assert torch.equal(host.sample(patched, positive, negative, noise_latent(1), cfg=2.0), image)
    assert seen["calls"] - without_us == without_us
    plain, plain_recorder = attach(omnigen2, concepts, layers=[1, 2])
    host.sample(plain, positive, negative, noise_latent(1), cfg=2.0)
    torch.testing.assert_close(recorder.maps(), plain_recorder.maps())
