"""attach() on a tiny Ideogram 4 (ComfyUI's Ideogram4Transformer2DModel, reached through the model-wide attention
override), driven through ComfyUI's samplers and compared with the masked forward of tests/reference_ideogram4.py."""

import pytest
import torch

import host
import reference
import tiny_ideogram4
from concept_attention.concepts import TokenSpan
from reference_ideogram4 import Ideogram4LayerInputs, ideogram4_reference, masked_forward

pytestmark = pytest.mark.host

# as if each concept were encoded alone behind the chat template's 3 tokens ("<|im_start|>", "user", "\n")
SPANS = (TokenSpan(3, 4, 9), TokenSpan(3, 5, 10), TokenSpan(3, 4, 9))


@pytest.fixture(scope="module")
def ideogram4():
    return tiny_ideogram4.tiny_ideogram4(seed=0)


@pytest.fixture(scope="module")
def concepts(ideogram4):
    return tiny_ideogram4.random_concepts(ideogram4, ["cat", "sofa", "window"], spans=SPANS)


def noise_latent(batch=2, h=4, w=5, seed=3):
    return torch.randn(batch, 128, h, w, generator=torch.Generator().manual_seed(seed))


def record(model, run):
    rec = Ideogram4LayerInputs(model.model.diffusion_model)
    try:
        out = run()
    finally:
        rec.remove()
    return out, rec.calls


def reference_maps(model, calls, concepts, layers, positions=(3, 3, 3)):
    dm = model.model.diffusion_model
    return reference.expected_maps(
        calls, lambda call: ideogram4_reference(dm, call, concepts.embeddings, layers, positions), layers, patch=1)


def test_model_is_what_the_test_claims(ideogram4):
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.base import last_quarter
    from concept_attention.adapters.ideogram4 import Ideogram4Adapter

    dm = ideogram4.model.diffusion_model
    assert type(ideogram4.model).__name__ == "Ideogram4" and len(dm.layers) == 4 and dm.head_dim == 32
    adapter = adapter_for(ideogram4)
    assert type(adapter) is Ideogram4Adapter and adapter.default_blocks() == [3] and adapter.text_width == 48
    assert last_quarter(34) == list(range(25, 34)) and "25-33 of 34" in Ideogram4Adapter.default_blocks_text
    assert adapter.grid((1, 128, 4, 5)) == (4, 5) and adapter.pixels_per_token() == 16


@pytest.mark.parametrize("cfg,layers", [(1.0, [1, 3]), (3.0, [0, 2]), (3.0, None)])
def test_maps_equal_the_masked_forward(ideogram4, concepts, cfg, layers):
    from concept_attention import attach
    patched, recorder = attach(ideogram4, concepts, layers=layers)
    positive = tiny_ideogram4.conditioning(ideogram4, 6, seed=1)
    negative = tiny_ideogram4.conditioning(ideogram4, 4, seed=2)
    _, calls = record(ideogram4, lambda: host.sample(patched, positive, negative, noise_latent(), cfg=cfg))
    maps = recorder.maps()
    assert maps.shape == (2, 3, 4, 5)
    torch.testing.assert_close(maps, reference_maps(ideogram4, calls, concepts, layers or [3]), rtol=1e-4, atol=1e-5)
    assert maps.std(dim=(2, 3)).min() > 1e-2, "the maps vary across tokens"
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows stay separate"


def test_padded_prompt(ideogram4, concepts):
    """Padded prompt rows form their own attention segment in the model; the maps still equal the masked
    forward (whose concept queries never see prompt rows) and the image is untouched."""
    from concept_attention import attach
    patched, recorder = attach(ideogram4, concepts, layers=[1, 2])
    positive = tiny_ideogram4.conditioning(ideogram4, 7, seed=1, padding=3)
    image, calls = record(ideogram4, lambda: host.sample(patched, positive, positive, noise_latent(), cfg=1.0))
    assert calls[0]["layers"][0]["mask"] is not None, "the model ran with its padding segments"
    assert torch.equal(image, host.sample(ideogram4, positive, positive, noise_latent(), cfg=1.0))
    torch.testing.assert_close(recorder.maps(), reference_maps(ideogram4, calls, concepts, [1, 2]),
                               rtol=1e-4, atol=1e-5)


def test_masked_forward_is_the_models_own_forward(ideogram4, concepts):
    positive = tiny_ideogram4.conditioning(ideogram4, 7, seed=1, padding=2)
    _, calls = record(ideogram4, lambda: host.sample(ideogram4, positive, positive, noise_latent(), cfg=1.0, steps=2))
    dm, C = ideogram4.model.diffusion_model, len(concepts)
    for call in calls:
        for i, (_, out) in enumerate(masked_forward(dm, call, concepts.embeddings, 2, (3, 3, 3))):
            torch.testing.assert_close(out[:, :-C], call["layers"][i + 1]["x"], rtol=1e-4, atol=1e-4)


def test_image_is_bit_identical(ideogram4, concepts):
    from concept_attention import attach
    positive = tiny_ideogram4.conditioning(ideogram4, 6, seed=1)
    negative = tiny_ideogram4.conditioning(ideogram4, 6, seed=2)
    for cfg, layers in ((1.0, None), (4.0, [0, 1, 2, 3])):
        patched, _ = attach(ideogram4, concepts, layers=layers)
        assert torch.equal(host.sample(patched, positive, negative, noise_latent(seed=5), cfg=cfg),
                           host.sample(ideogram4, positive, negative, noise_latent(seed=5), cfg=cfg))


def test_concepts_take_their_words_text_position(ideogram4, concepts):
    """A concept sits at its first word token's index in its own encoding (3 here, behind the template), or at 0
    when its embedding came without a span."""
    from concept_attention import Concepts, attach
    positive = tiny_ideogram4.conditioning(ideogram4, 6, seed=1)
    patched, recorder = attach(ideogram4, concepts, layers=[1, 2])
    _, calls = record(ideogram4, lambda: host.sample(patched, positive, positive, noise_latent(), cfg=1.0))
    torch.testing.assert_close(recorder.maps(), reference_maps(ideogram4, calls, concepts, [1, 2]),
                               rtol=1e-4, atol=1e-5)
    assert not torch.allclose(recorder.maps(), reference_maps(ideogram4, calls, concepts, [1, 2], (0, 0, 0)), atol=1e-3)

    spanless = Concepts(concepts.names, concepts.embeddings)
    patched, recorder = attach(ideogram4, spanless, layers=[1, 2])
    _, calls = record(ideogram4, lambda: host.sample(patched, positive, positive, noise_latent(), cfg=1.0))
    torch.testing.assert_close(recorder.maps(), reference_maps(ideogram4, calls, spanless, [1, 2], (0, 0, 0)),
                               rtol=1e-4, atol=1e-5)


def test_concept_stream_sees_nothing_of_the_prompt(ideogram4, concepts):
    """At layer 0 the image queries and the concept keys depend on the image, the timestep and the concepts
    only: raw cross-attention scores there are the same under any prompt."""
    from concept_attention.from_image import maps_from_latent

    def layer0_scores(prompt):
        return maps_from_latent(ideogram4, concepts, noise_latent(1), prompt, layers=[0], space="cross_attention",
                                softmax=False).maps

    scores = layer0_scores(tiny_ideogram4.conditioning(ideogram4, 6, seed=1))
    torch.testing.assert_close(layer0_scores(tiny_ideogram4.conditioning(ideogram4, 9, seed=7)), scores,
                               rtol=1e-5, atol=1e-5)
    assert scores.std(dim=(2, 3)).min() > 1e-2


def test_from_image_stops_after_the_last_layer(ideogram4, concepts):
    from concept_attention.from_image import maps_from_latent
    dm = ideogram4.model.diffusion_model
    seen = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen.append(i)) for i, b in enumerate(dm.layers)]
    handles.append(dm.final_layer.register_forward_pre_hook(lambda m, a: seen.append("final")))
    try:
        result, calls = record(ideogram4, lambda: maps_from_latent(
            ideogram4, concepts, noise_latent(2, seed=8), tiny_ideogram4.conditioning(ideogram4, 4, seed=1),
            layers=[1], samples=2))
    finally:
        for h in handles:
            h.remove()
    assert seen == [0, 1, 0, 1]
    expected = sum(reference.expected_maps([call], lambda c: ideogram4_reference(dm, c, concepts.embeddings, [1],
                                                                                 (3, 3, 3)), [1], patch=1)
                   for call in calls) / 2
    torch.testing.assert_close(result.maps, expected, rtol=1e-4, atol=1e-5)
    assert result.image_size == (64, 80)


def test_another_packs_attention_override_keeps_running(ideogram4, concepts):
    from concept_attention import attach
    seen = {"calls": 0}

    def foreign_override(func, *args, **kwargs):
        seen["calls"] += 1
        return func(*args, **kwargs)

    other = ideogram4.clone()
    other.model_options["transformer_options"]["optimized_attention_override"] = foreign_override
    positive = tiny_ideogram4.conditioning(ideogram4, 6, seed=1)
    negative = tiny_ideogram4.conditioning(ideogram4, 6, seed=2)
    image = host.sample(other, positive, negative, noise_latent(1), cfg=2.0)
    without_us = seen["calls"]
    assert without_us == 3 * 4  # 3 steps, one batched call each, 4 layers
    patched, recorder = attach(other, concepts, layers=[1, 2])
    assert torch.equal(host.sample(patched, positive, negative, noise_latent(1), cfg=2.0), image)
    assert seen["calls"] - without_us == without_us
    plain, plain_recorder = attach(ideogram4, concepts, layers=[1, 2])
    host.sample(plain, positive, negative, noise_latent(1), cfg=2.0)
    torch.testing.assert_close(recorder.maps(), plain_recorder.maps())
