"""attach() on a tiny SD3.5-style MMDiT (RMS QK-norm, an MMDiT-X block, pre-only last block), loaded from a
state dict through ComfyUI's own detection and sampled through its samplers."""

import pytest
import torch

import host
import reference

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def sd3():
    return host.tiny_sd3(seed=0, depth=3, self_attn_layers=(0,))


@pytest.fixture(scope="module")
def clip():
    return host.tiny_sd3_clip(seed=2)


@pytest.fixture(scope="module")
def concepts(clip):
    from concept_attention import encode_concepts
    return encode_concepts(clip, ["dog", "grass", "sky", "hummingbird"])


def test_model_is_what_the_test_claims(sd3):
    dm = sd3.model.diffusion_model
    assert type(sd3.model).__name__ == "SD3"
    assert dm.joint_blocks[0].x_block.x_block_self_attn
    assert dm.joint_blocks[-1].context_block.pre_only


@pytest.mark.parametrize("cfg,blocks", [(1.0, None), (4.0, None), (4.0, [1])])
def test_maps_equal_the_equations(sd3, clip, concepts, cfg, blocks):
    from concept_attention import attach
    patched, recorder = attach(sd3, concepts, layers=blocks)
    used = blocks or [0, 1, 2]
    dm = sd3.model.diffusion_model
    rec = reference.BlockInputs(dm, dm.joint_blocks, "sd3")
    latent = torch.randn(2, 16, 8, 6, generator=torch.Generator().manual_seed(4))
    try:
        host.sample(patched, host.conditioning(clip, "a dog on grass"), host.conditioning(clip, "blurry"),
                    latent, cfg=cfg, steps=3)
    finally:
        rec.remove()
    expected = reference.expected_maps(
        rec.calls, lambda call: reference.sd3_reference(dm, call, concepts.embeddings, used), used)
    maps = recorder.maps()
    assert maps.shape == (2, 4, 4, 3)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)
    reference.assert_maps_are_discriminating(maps, expected)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 4, 3))


def test_image_is_bit_identical(sd3, clip, concepts):
    from concept_attention import attach
    patched, _ = attach(sd3, concepts)
    pos, neg = host.conditioning(clip, "a dog on grass"), host.conditioning(clip, "")
    for cfg in (1.0, 5.0):
        latent = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(5))
        assert torch.equal(host.sample(sd3, pos, neg, latent, cfg=cfg), host.sample(patched, pos, neg, latent, cfg=cfg))
