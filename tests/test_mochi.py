"""Mochi (ComfyUI's AsymmDiTJoint): a tiny model built through ComfyUI's model config, driven through ComfyUI's
samplers, against the masked-forward re-derivation in reference_mochi.py."""

import pytest
import torch

import host
from video_checks import assert_frames_follow_the_vae, check_from_image_node_on_a_video_latent
import reference
import reference_mochi as ref
import tiny_mochi as tm
from concept_attention.errors import ConceptAttentionError

pytestmark = pytest.mark.host

NAMES = ("dog", "ball", "grass")


@pytest.fixture(scope="module")
def mochi():
    return tm.tiny_mochi()


@pytest.fixture(scope="module")
def concepts():
    from concept_attention import Concepts
    return Concepts(NAMES, torch.randn(3, 32, generator=torch.Generator().manual_seed(11)))


def sample_recorded(model, patched, positive, negative, latent, *, cfg, steps=2):
    """Sample `patched` while recording the inputs of `model`'s blocks in the real forward passes."""
    inputs = ref.BlockInputs(model.model.diffusion_model)
    try:
        out = host.sample(patched, positive, negative, latent, cfg=cfg, steps=steps)
    finally:
        inputs.remove()
    return out, inputs.calls


def test_model_is_what_the_tests_claim(mochi):
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.base import last_quarter
    from concept_attention.adapters.mochi import MochiAdapter
    dm = mochi.model.diffusion_model
    assert type(adapter_for(mochi)) is MochiAdapter
    assert dm.hidden_size_y < dm.hidden_size_x  # the asymmetric text stream
    assert [b.update_y for b in dm.blocks] == [True, True, True, False]  # the last block does not update text
    assert adapter_for(mochi).default_blocks() == [3] and last_quarter(48) == list(range(36, 48))
    assert "36-47 of 48" in MochiAdapter.default_blocks_text and not MochiAdapter.defaults_published


# cond / uncond prompt lengths: different (two model calls a step) or equal (one call, rows batched)
@pytest.mark.parametrize("cfg,tokens,blocks", [(1.0, (6, 4), [0, 2]), (3.0, (6, 4), [1, 3]),
                                               (3.0, (5, 5), [0, 1, 2, 3])])
def test_maps_equal_the_masked_forward(mochi, concepts, cfg, tokens, blocks):
    from concept_attention import attach
    dm = mochi.model.diffusion_model
    patched, recorder = attach(mochi, concepts, layers=blocks)
    positive, negative = tm.conditioning(tokens[0], 0), tm.conditioning(tokens[1], 1)
    _, calls = sample_recorded(mochi, patched, positive, negative, tm.video_latent(), cfg=cfg)
    if cfg > 1:
        assert {len(call["cond_or_uncond"]) for call in calls} == {1 if tokens[0] != tokens[1] else 2}
    expected = ref.expected_maps(dm, calls, concepts.embeddings, blocks)
    maps = recorder.maps()
    assert maps.shape == (2, 3, 3, 2, 3)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)
    reference.assert_maps_are_discriminating(maps.flatten(2, 3), expected.flatten(2, 3))
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 3, 2, 3))
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows must stay separate"
    assert not torch.allclose(maps[:, :, 0], maps[:, :, -1], atol=1e-3), "frames must stay separate"


def test_masked_forward_is_the_models_own_forward(mochi, concepts):
    """The reference's video and text rows of each block equal what the next block received: its math is the
    model's, and the concept mask leaves the prompt and the video untouched."""
    _, calls = sample_recorded(mochi, mochi, tm.conditioning(6, 0), tm.conditioning(4, 1), tm.video_latent(),
                               cfg=2.0)
    for call in calls:
        _, outputs = ref.masked_forward(mochi.model.diffusion_model, call, concepts.embeddings, [3])
        for i in (0, 1, 2):
            torch.testing.assert_close(outputs[i][0], call["blocks"][i + 1]["x"], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(outputs[i][1], call["blocks"][i + 1]["y"], rtol=1e-4, atol=1e-4)


def test_joint_attention_is_video_first_without_padding(mochi, concepts):
    """ComfyUI's Mochi attends over [video; prompt tokens]: the attention call's first rows are the video's
    queries (as the reference computes them) and its length drops the padding; the maps read those first rows."""
    dm = mochi.model.diffusion_model
    seen = []

    def capture(func, *args, **kwargs):
        seen.append(args[0])  # q, [B, H, L, Dh] (skip_reshape)
        return func(*args, **kwargs)

    model = mochi.clone()
    model.model_options["transformer_options"]["optimized_attention_override"] = capture
    latent = tm.video_latent(batch=1)
    _, calls = sample_recorded(mochi, model, tm.conditioning(6, 0), tm.conditioning(6, 0), latent, cfg=1.0, steps=1)
    block = calls[0]["blocks"][0]
    video = block["x"].shape[1]
    assert block["y"].shape[1] == 10 and block["crop_y"] == 6 and seen[0].shape[2] == video + 6
    attn, vec, x = dm.blocks[0].attn, block["c"].float(), block["x"].float()
    scale = ref.linear(torch.nn.functional.silu(vec), dm.blocks[0].mod_x).chunk(4, dim=-1)[0]
    q, _, _ = ref.split_qkv(ref.linear(ref.rms(x) * (1 + scale[:, None]), attn.qkv_x), attn.num_heads)
    q = ref.rope(ref.rms(q, 1e-5, attn.q_norm_x.weight), block["rope_cos"], block["rope_sin"])
    torch.testing.assert_close(seen[0][:, :, :video], q.transpose(1, 2), rtol=1e-4, atol=1e-4)


def test_video_is_bit_identical(mochi, concepts):
    from concept_attention import attach
    patched, _ = attach(mochi, concepts, layers="all")
    for cfg, tokens in ((1.0, (6, 4)), (4.0, (6, 4)), (4.0, (5, 5))):
        positive, negative = tm.conditioning(tokens[0], 0), tm.conditioning(tokens[1], 1)
        latent = tm.video_latent(frames=4)
        assert torch.equal(host.sample(mochi, positive, negative, latent, cfg=cfg, steps=2),
                           host.sample(patched, positive, negative, latent, cfg=cfg, steps=2))


def test_half_precision(mochi, concepts):
    """bf16 weights: the video stays bit-identical, the maps stay close to the fp32 model's."""
    from concept_attention import attach
    positive, negative = tm.conditioning(6, 0), tm.conditioning(4, 1)
    latent = tm.video_latent(batch=1)
    patched, recorder = attach(mochi, concepts)
    host.sample(patched, positive, negative, latent, cfg=2.0, steps=2)
    model = tm.tiny_mochi(dtype=torch.bfloat16)
    patched, half = attach(model, concepts)
    assert torch.equal(host.sample(model, positive, negative, latent, cfg=2.0, steps=2),
                       host.sample(patched, positive, negative, latent, cfg=2.0, steps=2))
    maps = half.maps()
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert (maps - recorder.maps()).abs().max() < 0.15


def test_concept_stream_rules(mochi, concepts):
    """Each rule changes the maps, so a pack that broke one would fail: the zero pooled vector (the pool of a
    zero T5 sequence, neither the prompt's pool nor none), and no position (rotated as a video token they
    differ)."""
    from concept_attention import attach
    dm = mochi.model.diffusion_model
    patched, recorder = attach(mochi, concepts, layers=[1, 2])
    _, calls = sample_recorded(mochi, patched, tm.conditioning(6, 0), tm.conditioning(4, 1),
                               tm.video_latent(batch=1), cfg=2.0)
    maps = recorder.maps()
    torch.testing.assert_close(maps, ref.expected_maps(dm, calls, concepts.embeddings, [1, 2]), rtol=1e-4, atol=1e-5)
    for options in (dict(pooled="prompt"), dict(pooled="none"), dict(concept_rope=4)):
        other = ref.expected_maps(dm, calls, concepts.embeddings, [1, 2], **options)
        assert not torch.allclose(maps, other, atol=1e-4), f"maps do not depend on {options}"


def test_frame_layout_is_the_vaes(mochi):
    """The frame expansion follows ComfyUI's own Mochi VAE (comfy.sd.VAE, built from the state dict key it
    detects it by; weights never run): its temporal compression, its decoded frame count per latent frame count,
    and which latent frame each frame joins when encoding."""
    from concept_attention.adapters import adapter_for
    vae = tm.video_vae()
    assert type(vae.first_stage_model).__module__ == "comfy.ldm.genmo.vae.model"
    layout = adapter_for(mochi).frame_layout()
    assert layout.compression == vae.temporal_compression_decode()
    assert_frames_follow_the_vae(layout, vae, latent_frames=5, input_frames=25)


def test_from_image_maps_a_video_in_one_partial_pass(mochi, concepts):
    from concept_attention.from_image import maps_from_latent
    dm = mochi.model.diffusion_model
    seen = [0] * 4
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, seen[i] + 1))
               for i, b in enumerate(dm.blocks)]
    inputs = ref.BlockInputs(dm)
    try:
        result = maps_from_latent(mochi, concepts, tm.video_latent(batch=1), tm.conditioning(6, 0),
                                  noise_level=0.5, samples=2, seed=3, layers=[1])
    finally:
        inputs.remove()
        for h in handles:
            h.remove()
    assert seen == [2, 2, 0, 0]  # two samples, each stopped after block 1
    per_sample = [ref.expected_maps(dm, [call], concepts.embeddings, [1]) for call in inputs.calls]
    torch.testing.assert_close(result.maps, sum(per_sample) / 2, rtol=1e-4, atol=1e-5)
    assert result.maps.shape == (1, 3, 3, 2, 3) and result.image_size == (32, 48)
    assert result.at_image_size().shape == (1, 3, tm.video_vae().upscale_ratio[0](3), 32, 48)


def test_nodes_give_per_frame_masks_through_the_t5_encoder(mochi):
    """The pack's nodes on a Mochi run, concepts and prompt through the tiny Mochi T5 (256 tokens, masked)."""
    from tiny_encoders import tiny_mochi_clip
    n = host.load_pack().nodes
    clip = tiny_mochi_clip()
    decoded = tm.video_vae().upscale_ratio[0]  # the VAE's decoded frames per latent frame count
    frames = decoded(3)
    patched, handle = n.ConceptAttentionPatch.execute(mochi, clip, "dog, ball, grass", blocks="1-3").result
    positive, negative = (host.conditioning(clip, text) for text in ("a dog with a ball", ""))
    assert positive[0][0].shape[1] == 256 and 1 < positive[0][1]["attention_mask"].sum() < 256
    out = host.sample(patched, positive, negative, tm.video_latent(frames=3), cfg=2.0, steps=2)
    masks, heat, seg, concept_maps = n.ConceptAttentionMasks.execute(handle, {"samples": out}).result
    assert masks.shape == (2 * 3 * frames, 32, 48)  # per video: each concept's frames in a row
    assert heat.shape[0] == 2 * 3 * frames and seg.shape[0] == 2 * frames
    per_frame = masks.reshape(2, 3, frames, 32, 48)
    torch.testing.assert_close(per_frame.sum(1), torch.ones(2, frames, 32, 48))
    # decoded frame 0 alone (latent frame 0), then latent frame 1's frames alike (up to the upsampling's float
    # rounding), then latent frame 2's
    first, second = decoded(1), decoded(2)
    assert not torch.allclose(per_frame[:, :, first - 1], per_frame[:, :, first], atol=1e-3)
    torch.testing.assert_close(per_frame[:, :, first], per_frame[:, :, second - 1], rtol=0, atol=1e-6)
    assert not torch.allclose(per_frame[:, :, second - 1], per_frame[:, :, second], atol=1e-3)


def test_from_image_node_maps_a_video_latent(mochi):
    """The From Image node on a sampler's video LATENT: masks per decoded frame, clear errors (video_checks.py)."""
    from tiny_encoders import tiny_mochi_clip
    check_from_image_node_on_a_video_latent(mochi, tiny_mochi_clip(), tm, channels=12)


def test_unsupported_models_name_mochi():
    from concept_attention import Concepts, attach
    with pytest.raises(ConceptAttentionError, match=r"does not support this model: Stable Diffusion 1.5 .*"
                                                    r"supported: .*Mochi \(Mochi 1 preview"):
        attach(host.tiny_sd15(), Concepts(["a"], torch.zeros(1, 32)))
