"""attach() on a tiny Krea 2 (ComfyUI's SingleStreamDiT, reached through the model-wide attention override),
driven through ComfyUI's samplers and compared with the masked forward of tests/reference_krea2.py."""

import pytest
import torch

import host
import reference
import tiny_krea2
from reference_krea2 import Krea2BlockInputs, krea2_reference, masked_forward

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def krea2():
    return tiny_krea2.tiny_krea2(seed=0)


@pytest.fixture(scope="module")
def concepts(krea2):
    return tiny_krea2.random_concepts(krea2, ["cat", "sofa", "window"])


def noise_latent(batch=2, h=8, w=10, seed=3):
    return torch.randn(batch, 16, h, w, generator=torch.Generator().manual_seed(seed))


def record(model, run):
    """Run `run()` while recording every block's inputs of the real forward passes of `model`."""
    rec = Krea2BlockInputs(model.model.diffusion_model)
    try:
        out = run()
    finally:
        rec.remove()
    return out, rec.calls


def reference_maps(model, calls, concepts, blocks, **kw):
    dm = model.model.diffusion_model
    return reference.expected_maps(calls, lambda call: krea2_reference(dm, call, concepts.embeddings, blocks, **kw),
                                   blocks)


def test_model_is_what_the_test_claims(krea2):
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.base import last_quarter
    from concept_attention.adapters.krea2 import Krea2Adapter

    dm = krea2.model.diffusion_model
    assert type(krea2.model).__name__ == "Krea2" and type(dm).__name__ == "SingleStreamDiT"
    assert len(dm.blocks) == 4 and dm.blocks[0].attn.kvheads < dm.blocks[0].attn.heads  # grouped-query attention
    adapter = adapter_for(krea2)
    assert type(adapter) is Krea2Adapter
    assert adapter.default_blocks() == [3]  # the last quarter of 4 blocks
    assert last_quarter(28) == list(range(21, 28)) and "21-27 of 28" in Krea2Adapter.default_blocks_text
    assert adapter.text_width == 3 * 32


@pytest.mark.parametrize("cfg,blocks", [(1.0, [1, 3]), (3.0, [1, 3]), (3.0, None)])
def test_maps_equal_the_masked_forward(krea2, concepts, cfg, blocks):
    from concept_attention import attach
    patched, recorder = attach(krea2, concepts, layers=blocks)
    positive, negative = tiny_krea2.conditioning(krea2, 5, seed=1), tiny_krea2.conditioning(krea2, 3, seed=2)
    _, calls = record(krea2, lambda: host.sample(patched, positive, negative, noise_latent(), cfg=cfg))
    expected = reference_maps(krea2, calls, concepts, blocks or [3])
    maps = recorder.maps()
    assert maps.shape == (2, 3, 4, 5)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 4, 5))
    assert maps.std(dim=(2, 3)).min() > 1e-2, "the maps vary across tokens"
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows stay separate"


def test_masked_forward_is_the_models_own_forward(krea2, concepts):
    """The reference's prompt and image rows of each block equal what the next block received: its math is the
    model's, and the concept mask leaves the prompt and the image untouched."""
    positive = tiny_krea2.conditioning(krea2, 5, seed=1)
    _, calls = record(krea2, lambda: host.sample(krea2, positive, positive, noise_latent(), cfg=1.0, steps=2))
    dm, C = krea2.model.diffusion_model, len(concepts)
    for call in calls:
        for i, (_, out) in enumerate(masked_forward(dm, call, concepts.embeddings, 2)):
            torch.testing.assert_close(out[:, :-C], call["blocks"][i + 1]["x"], rtol=1e-4, atol=1e-4)


def test_image_is_bit_identical(krea2, concepts):
    from concept_attention import attach
    positive, negative = tiny_krea2.conditioning(krea2, 5, seed=1), tiny_krea2.conditioning(krea2, 5, seed=2)
    for cfg, blocks in ((1.0, None), (4.0, [0, 1, 2, 3])):
        patched, _ = attach(krea2, concepts, layers=blocks)
        latent = noise_latent(seed=5)
        assert torch.equal(host.sample(patched, positive, negative, latent, cfg=cfg),
                           host.sample(krea2, positive, negative, latent, cfg=cfg))


def test_concepts_take_the_text_position(krea2, concepts):
    """Krea 2's text tokens sit at (0, 0, 0); concepts there, not anywhere else."""
    from concept_attention import attach
    patched, recorder = attach(krea2, concepts, layers=[1, 2])
    positive = tiny_krea2.conditioning(krea2, 5, seed=1)
    _, calls = record(krea2, lambda: host.sample(patched, positive, positive, noise_latent(), cfg=1.0))
    torch.testing.assert_close(recorder.maps(), reference_maps(krea2, calls, concepts, [1, 2]), rtol=1e-4, atol=1e-5)
    elsewhere = reference_maps(krea2, calls, concepts, [1, 2], concept_position=(0, 2, 3))
    assert not torch.allclose(recorder.maps(), elsewhere, atol=1e-3)


def test_concept_stream_sees_nothing_of_the_prompt(krea2, concepts):
    """At block 0 the image queries and the concept keys depend on the image, the timestep and the concepts only:
    raw cross-attention scores there are the same under any prompt (no prompt-derived modulation, text fusion
    without the prompt) and a concept's scores do not depend on the other concepts (text fusion one concept at a
    time)."""
    from concept_attention.from_image import maps_from_latent

    def block0_scores(concept_set, prompt):
        image_latent = noise_latent(1).unsqueeze(2)  # 5-D, as a VAE Encode with the Wan 2.1 VAE gives
        return maps_from_latent(krea2, concept_set, image_latent, prompt, layers=[0], space="cross_attention",
                                softmax=False).maps

    scores = block0_scores(concepts, tiny_krea2.conditioning(krea2, 5, seed=1))
    torch.testing.assert_close(block0_scores(concepts, tiny_krea2.conditioning(krea2, 9, seed=7)), scores,
                               rtol=1e-5, atol=1e-5)
    others = tiny_krea2.random_concepts(krea2, ["cat", "dog"], seed=12)
    cat_with_others = type(concepts)(["cat", "dog"], torch.stack([concepts.embeddings[0], others.embeddings[1]]))
    torch.testing.assert_close(block0_scores(cat_with_others, tiny_krea2.conditioning(krea2, 5, seed=1))[:, 0],
                               scores[:, 0], rtol=1e-5, atol=1e-5)
    assert scores.std(dim=(2, 3)).min() > 1e-2


def test_from_image_stops_after_the_last_block(krea2, concepts):
    from concept_attention.from_image import maps_from_latent
    dm = krea2.model.diffusion_model
    seen = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen.append(i)) for i, b in enumerate(dm.blocks)]
    handles.append(dm.last.register_forward_pre_hook(lambda m, a: seen.append("last")))
    image_latent = noise_latent(2, seed=8).unsqueeze(2)  # a VAE Encode with the Wan 2.1 VAE gives 5-D latents
    try:
        result, calls = record(krea2, lambda: maps_from_latent(krea2, concepts, image_latent,
                                                               tiny_krea2.conditioning(krea2, 4, seed=1),
                                                               layers=[1], samples=2))
    finally:
        for h in handles:
            h.remove()
    assert seen == [0, 1, 0, 1]  # two samples, each stopped after block 1
    expected = sum(reference.expected_maps([call], lambda c: krea2_reference(dm, c, concepts.embeddings, [1]), [1])
                   for call in calls) / 2
    torch.testing.assert_close(result.maps, expected, rtol=1e-4, atol=1e-5)
    assert result.image_size == (64, 80)


def test_another_packs_attention_override_keeps_running(krea2, concepts):
    from concept_attention import attach
    seen = {"calls": 0}

    def foreign_override(func, *args, **kwargs):
        seen["calls"] += 1
        return func(*args, **kwargs)

    other = krea2.clone()
    other.model_options["transformer_options"]["optimized_attention_override"] = foreign_override
    positive, negative = tiny_krea2.conditioning(krea2, 5, seed=1), tiny_krea2.conditioning(krea2, 5, seed=2)
    image = host.sample(other, positive, negative, noise_latent(1), cfg=2.0)
    without_us = seen["calls"]
    assert without_us == 3 * (4 + 4)  # 3 steps, one batched call each: 4 text-fusion calls and 4 blocks
    patched, recorder = attach(other, concepts, layers=[1, 2])
    assert torch.equal(host.sample(patched, positive, negative, noise_latent(1), cfg=2.0), image)
    assert seen["calls"] - without_us == without_us
    plain, plain_recorder = attach(krea2, concepts, layers=[1, 2])
    host.sample(plain, positive, negative, noise_latent(1), cfg=2.0)
    torch.testing.assert_close(recorder.maps(), plain_recorder.maps())


def test_text_fusion_calls_as_long_as_the_joint_sequence_are_not_blocks():
    """With 6 encoder layers, a 2-token prompt and 2x2 image tokens, the text fusion's attention across encoder
    layers is exactly as long as the blocks' joint attention; blocks are still found by call order."""
    from concept_attention import attach
    model = tiny_krea2.tiny_krea2(seed=1, txtlayers=6)
    concepts = tiny_krea2.random_concepts(model, ["cat", "sofa"])
    patched, recorder = attach(model, concepts, layers=[0, 3])
    positive = tiny_krea2.conditioning(model, 2, seed=3)
    _, calls = record(model, lambda: host.sample(patched, positive, positive, noise_latent(1, 4, 4), cfg=1.0))
    assert calls[0]["text_tokens"] + 4 == model.model.diffusion_model.txtlayers
    torch.testing.assert_close(recorder.maps(), reference_maps(model, calls, concepts, [0, 3]), rtol=1e-4, atol=1e-5)


def test_clear_errors(krea2, concepts):
    import comfy.supported_models
    from comfy.model_patcher import ModelPatcher
    from concept_attention import Concepts, attach
    from concept_attention.errors import ConceptAttentionError

    unet = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
                adm_in_channels=None, in_channels=4, model_channels=32, num_res_blocks=[1], transformer_depth=[1],
                channel_mult=[1], transformer_depth_middle=1, use_linear_in_transformer=False, context_dim=32,
                num_head_channels=16, transformer_depth_output=[1, 1], use_temporal_attention=False,
                use_temporal_resblock=False)
    sd15 = ModelPatcher(comfy.supported_models.SD15(unet).get_model({}), torch.device("cpu"), torch.device("cpu"))
    unsupported = r"does not support this model: Stable Diffusion 1.5 .*supported: .*Krea 2 \(Krea 2 \(K2\)\)"
    with pytest.raises(ConceptAttentionError, match=unsupported):
        attach(sd15, concepts)
    with pytest.raises(ConceptAttentionError, match=r"Block index 4 is out of range.*valid indices are 0-3"):
        attach(krea2, concepts, layers=[4])
    with pytest.raises(ConceptAttentionError, match="width 96"):
        attach(krea2, Concepts(["a"], torch.zeros(1, 32)))
    patched, _ = attach(krea2, concepts)
    positive = tiny_krea2.conditioning(krea2, 5, seed=1)
    with pytest.raises(ConceptAttentionError, match="Krea 2 makes single images, but this latent has 2 frames"):
        host.sample(patched, positive, positive, torch.randn(1, 16, 2, 8, 8), cfg=1.0, steps=1)
