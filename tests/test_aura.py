"""attach() on a tiny AuraFlow built through ComfyUI's classes, driven through ComfyUI's samplers, against the
masked forward of tests/reference_aura.py."""

import pytest
import torch

import host
import reference
import reference_aura as ref
import tiny_aura

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def aura():
    return tiny_aura.tiny_aura(seed=0)


@pytest.fixture(scope="module")
def t5():
    return tiny_aura.tiny_aura_clip(seed=1)


@pytest.fixture(scope="module")
def concepts(t5):
    from concept_attention import encode_concepts
    return encode_concepts(t5, ["cat", "sofa", "window"])


def noise(batch=2, seed=3):
    return torch.randn(batch, 4, 16, 20, generator=torch.Generator().manual_seed(seed))


def sample_recording(model, sampled, positive, negative, latent, *, cfg, steps=3):
    dm = model.model.diffusion_model
    rec = ref.AuraBlockInputs(dm)
    try:
        out = host.sample(sampled, positive, negative, latent, cfg=cfg, steps=steps)
    finally:
        rec.remove()
    return out, rec.calls


def reference_maps(model, calls, concepts, blocks):
    dm = model.model.diffusion_model
    return reference.expected_maps(calls, lambda call: ref.aura_reference(dm, call, concepts.embeddings, blocks),
                                   blocks)


@pytest.mark.parametrize("cfg,negative", [(1.0, ""), (3.0, "a blurry photo of a dog")])
def test_maps_equal_the_masked_forward(aura, t5, concepts, cfg, negative):
    from concept_attention import attach
    patched, recorder = attach(aura, concepts, layers=[0, 2])
    _, calls = sample_recording(aura, patched, host.conditioning(t5, "a cat on a sofa"),
                                host.conditioning(t5, negative), noise(), cfg=cfg)
    assert calls[0]["blocks"][0]["txt"].shape[1] == 8 + 256  # registers, then the padded prompt
    maps = recorder.maps()
    assert maps.shape == (2, 3, 8, 10)
    torch.testing.assert_close(maps, reference_maps(aura, calls, concepts, [0, 2]), rtol=1e-4, atol=1e-5)
    assert maps.std(dim=(2, 3)).min() > 1e-3, "the maps vary across tokens"
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows stay separate"


def test_image_is_bit_identical(aura, t5, concepts):
    from concept_attention import attach
    patched, _ = attach(aura, concepts)
    pos, neg = host.conditioning(t5, "a cat on a sofa"), host.conditioning(t5, "")
    for cfg in (1.0, 4.0):
        assert torch.equal(host.sample(aura, pos, neg, noise(), cfg=cfg),
                           host.sample(patched, pos, neg, noise(), cfg=cfg))


def test_concept_modulation_does_not_depend_on_the_prompt(aura, t5, concepts):
    """In block 0 the image tokens' keys and values come from the noisy latent, its position table and the
    timestep, so value-space scores there see the prompt only through the concept stream's modulation: two
    prompts must give identical maps (and another noise level, i.e. timestep, must not)."""
    from concept_attention.from_image import maps_from_latent
    latent = noise(batch=1)

    def maps(text, noise_level=0.5):
        return maps_from_latent(aura, concepts, latent, host.conditioning(t5, text), layers=[0], space="value",
                                noise_level=noise_level).maps

    cat = maps("a cat")
    torch.testing.assert_close(maps("a large dog asleep on a red velvet sofa"), cat, rtol=0, atol=1e-6)
    assert not torch.allclose(maps("a cat", noise_level=0.8), cat, atol=1e-4)


def test_from_image_stops_after_the_last_needed_block(aura, t5, concepts):
    from concept_attention.from_image import maps_from_latent
    dm = aura.model.diffusion_model
    called = []
    handles = [block.register_forward_pre_hook(lambda m, a, name=name, i=i: called.append((name, i)))
               for name, blocks in (("double", dm.double_layers), ("single", dm.single_layers))
               for i, block in enumerate(blocks)]
    try:
        maps_from_latent(aura, concepts, noise(batch=1), host.conditioning(t5, "a cat"), layers=[1])
    finally:
        for h in handles:
            h.remove()
    assert called == [("double", 0), ("double", 1)]


def test_family_defaults_and_errors(aura, concepts):
    from concept_attention import attach
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.aura import AuraFlowAdapter
    from concept_attention.errors import ConceptAttentionError

    adapter = adapter_for(aura)
    assert type(adapter) is AuraFlowAdapter and adapter.default_blocks() == [2]
    with pytest.raises(ConceptAttentionError, match=r"Block index 3 is out of range.*valid indices are 0-2"):
        attach(aura, concepts, layers=[3])
    with pytest.raises(ConceptAttentionError, match="width 32"):
        from concept_attention import Concepts
        attach(aura, Concepts(["a"], torch.zeros(1, 7)))
