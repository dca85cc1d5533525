"""Maps of an existing image: one partial forward pass per sample, through ComfyUI's sampler entry point."""

import pytest
import torch

import host
import reference
from concept_attention.errors import ConceptAttentionError

pytestmark = pytest.mark.host


def count_block_calls(dm):
    counts = {"double": [0] * len(dm.double_blocks), "single": [0] * len(dm.single_blocks)}
    handles = []
    for kind, blocks in (("double", dm.double_blocks), ("single", dm.single_blocks)):
        for i, block in enumerate(blocks):
            def hook(module, args, kind=kind, i=i):
                counts[kind][i] += 1
            handles.append(block.register_forward_pre_hook(hook))
    return counts, handles


def test_one_partial_pass_per_sample_equals_the_equations(flux, clip, concepts):
    from concept_attention.from_image import maps_from_latent
    dm = flux.model.diffusion_model
    image_latent = torch.randn(2, 16, 8, 6, generator=torch.Generator().manual_seed(0))
    counts, handles = count_block_calls(dm)
    rec = reference.BlockInputs(dm, dm.double_blocks, "flux")
    try:
        result = maps_from_latent(flux, concepts, image_latent, host.conditioning(clip, "a cat"),
                                  noise_level=0.5, samples=3, seed=7, layers=[1])
    finally:
        rec.remove()
        for h in handles:
            h.remove()
    assert counts == {"double": [3, 3, 0], "single": [0]}  # stops after block 1, three samples
    assert [float(call["sigmas"][0]) for call in rec.calls] == [0.5, 0.5, 0.5]
    per_sample = [reference.expected_maps([call], lambda c: reference.flux_reference(dm, c, concepts.embeddings, [1]), [1])
                  for call in rec.calls]
    torch.testing.assert_close(result.maps, sum(per_sample) / 3, rtol=1e-4, atol=1e-5)
    assert result.names == ("cat", "sofa", "window") and result.image_size == (64, 48)


def test_noise_samples_differ_by_seed(flux, clip, concepts):
    from concept_attention.from_image import maps_from_latent
    image_latent = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = host.conditioning(clip, "")
    a = maps_from_latent(flux, concepts, image_latent, cond, seed=1).maps
    b = maps_from_latent(flux, concepts, image_latent, cond, seed=2).maps
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a, maps_from_latent(flux, concepts, image_latent, cond, seed=1).maps)


def test_bad_noise_level_and_samples(flux, clip, concepts):
    from concept_attention.from_image import maps_from_latent
    cond = host.conditioning(clip, "")
    with pytest.raises(ConceptAttentionError, match=r"noise_level .* must lie in \(0, 1\]"):
        maps_from_latent(flux, concepts, torch.zeros(1, 16, 8, 8), cond, noise_level=0.0)
    with pytest.raises(ConceptAttentionError, match="samples must be at least 1"):
        maps_from_latent(flux, concepts, torch.zeros(1, 16, 8, 8), cond, samples=0)


def test_sd3_from_image_stops_after_the_last_block():
    from concept_attention import encode_concepts
    from concept_attention.from_image import maps_from_latent
    sd3, clip = host.tiny_sd3(seed=0, depth=3), host.tiny_sd3_clip()
    dm = sd3.model.diffusion_model
    seen = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen.append(i)) for i, b in enumerate(dm.joint_blocks)]
    try:
        result = maps_from_latent(sd3, encode_concepts(clip, ["dog", "grass"]), torch.randn(1, 16, 8, 8),
                                  host.conditioning(clip, "a dog"), layers=[0, 1])
    finally:
        for h in handles:
            h.remove()
    assert seen == [0, 1]
    torch.testing.assert_close(result.maps.sum(1), torch.ones(1, 4, 4))
