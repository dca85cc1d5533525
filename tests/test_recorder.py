"""Which run's maps a user gets: clones, several models, several samplers, interrupted runs."""

import pytest
import torch

import host
from concept_attention.errors import ConceptAttentionError

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def prompts(clip):
    return host.conditioning(clip, "a cat on a sofa"), host.conditioning(clip, "")


def latent(seed):
    """A start latent; at full denoise Flux replaces it by the sampler's noise, so runs differ by `seed=`."""
    return torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(seed))


def encode(clip, names):
    from concept_attention import encode_concepts
    return encode_concepts(clip, names)


def test_maps_survive_a_later_clone_with_weight_patches(flux, clip, prompts):
    """A LoRA loader after the patch node clones the model and adds weight patches."""
    from concept_attention import attach
    patched, recorder = attach(flux, encode(clip, ["cat", "sofa"]))
    key = "diffusion_model.double_blocks.0.img_attn.qkv.weight"
    delta = 0.01 * torch.ones_like(flux.model.state_dict()[key])
    lora_after, lora_only = patched.clone(), flux.clone()
    for m in (lora_after, lora_only):
        m.add_patches({key: (delta,)}, 1.0)
    out = host.sample(lora_after, *prompts, latent(0))
    assert torch.equal(out, host.sample(lora_only, *prompts, latent(0)))
    assert recorder.maps_for(out).shape == (1, 2, 4, 4)


def test_two_patched_models_never_mix(flux, clip, prompts):
    from concept_attention import attach
    model_a, rec_a = attach(flux, encode(clip, ["cat", "sofa"]))
    model_b, rec_b = attach(flux, encode(clip, ["dog", "grass", "sky"]))
    out_a = host.sample(model_a, *prompts, latent(1), seed=1)
    maps_a = rec_a.maps().clone()
    out_b = host.sample(model_b, *prompts, latent(2), seed=2)
    assert rec_b.maps().shape[1] == 3
    torch.testing.assert_close(rec_a.maps(), maps_a)
    with pytest.raises(ConceptAttentionError, match="No Concept Attention run produced this LATENT"):
        rec_a.maps_for(out_b)
    with pytest.raises(ConceptAttentionError, match="No Concept Attention run produced this LATENT"):
        rec_b.maps_for(out_a)


def test_each_masks_node_shows_the_run_of_its_latent(flux, clip, prompts):
    pack = host.load_pack()
    patched, handle = pack.nodes.ConceptAttentionPatch.execute(flux, clip, "cat, sofa").result
    out_1 = host.sample(patched, *prompts, latent(3), seed=1)
    maps_1 = handle.maps().clone()
    out_2 = host.sample(patched, *prompts, latent(4), seed=2)
    maps_2 = handle.maps().clone()
    assert not torch.allclose(maps_1, maps_2)
    masks_node = pack.nodes.ConceptAttentionMasks
    for out, maps in ((out_1, maps_1), (out_2, maps_2)):
        concept_maps = masks_node.execute(handle, {"samples": out}).result[3]
        torch.testing.assert_close(concept_maps.maps, maps)


def test_an_interrupted_run_leaves_no_maps(flux, clip, prompts):
    import comfy.model_management
    import comfy.sample
    import comfy.samplers
    from concept_attention import attach

    patched, recorder = attach(flux, encode(clip, ["cat", "sofa"]))
    with pytest.raises(ConceptAttentionError, match="No sampling run has finished"):
        recorder.maps()
    finished = host.sample(patched, *prompts, latent(5))
    finished_maps = recorder.maps().clone()

    def interrupt(step, *args):
        if step == 1:
            raise comfy.model_management.InterruptProcessingException()

    sigmas = comfy.samplers.calculate_sigmas(patched.get_model_object("model_sampling"), "simple", 4)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        comfy.sample.sample_custom(patched, latent(6), 1.0, comfy.samplers.sampler_object("euler"), sigmas,
                                   prompts[0], prompts[1], torch.zeros(1, 16, 8, 8), callback=interrupt)
    assert recorder.active is None
    torch.testing.assert_close(recorder.maps(), finished_maps)  # never the partial run
    torch.testing.assert_close(recorder.maps_for(finished), finished_maps)


def test_steps_outside_the_run_are_a_clear_error(flux, clip, prompts):
    from concept_attention import attach
    patched, recorder = attach(flux, encode(clip, ["cat"]), steps=[10, 11])
    out = host.sample(patched, *prompts, latent(7), steps=3)
    with pytest.raises(ConceptAttentionError, match=r"selected steps \[10, 11\] were not among the steps that ran \(0-2\)"):
        recorder.maps_for(out)
