"""LTX-2 / LTX-2.3 / LTX-Video (cross-attention baseline only): tiny models built through ComfyUI's model
configs, driven through ComfyUI's samplers, against the explicit re-derivation in reference_ltx.py."""

import pytest
import torch

import host
from video_checks import assert_frames_follow_the_vae
import reference
import reference_ltx as ref
import tiny_ltx as tl
from concept_attention.errors import ConceptAttentionError

pytestmark = pytest.mark.host

NAMES = ("dog", "ball", "grass")


@pytest.fixture(scope="module")
def models():
    return {name: tl.tiny_ltx(name) for name in tl.VARIANTS}


def concepts_for(model):
    from concept_attention import Concepts
    return Concepts(NAMES, torch.randn(3, tl.text_width(model), generator=torch.Generator().manual_seed(11)))


def prompts(model, tokens=(6, 4)):
    return tl.conditioning(model, tokens[0], 0), tl.conditioning(model, tokens[1], 1)


def sample_recorded(model, patched, positive, negative, latent, *, cfg, steps=2, noise_mask=None):
    """Sample `patched` (KSampler) while recording each block's video text cross-attention input."""
    import nodes
    inputs = ref.CrossAttentionInputs(model.model.diffusion_model)
    start = {"samples": latent} if noise_mask is None else {"samples": latent, "noise_mask": noise_mask}
    try:
        out = nodes.common_ksampler(patched, 0, steps, cfg, "euler", "simple", positive, negative, start)[0]
    finally:
        inputs.remove()
    return out["samples"], inputs.calls


@pytest.mark.parametrize("variant,cfg", [("2", 1.0), ("2", 3.0), ("2.3", 3.0), ("video", 3.0)])
def test_maps_equal_the_rederivation(models, variant, cfg):
    from concept_attention import attach
    model = models[variant]
    concepts = concepts_for(model)
    patched, recorder = attach(model, concepts, layers=[1, 2])
    assert recorder.space == "cross_attention"  # 'auto': the baseline, the only space LTX has
    _, calls = sample_recorded(model, patched, *prompts(model), tl.video_latent(2), cfg=cfg)
    maps = recorder.maps()
    expected = ref.expected_maps(model.model.diffusion_model, calls, concepts.embeddings, [1, 2])
    assert maps.shape == (2, 3, 3, 2, 3)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)
    reference.assert_maps_are_discriminating(maps, expected)
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows must stay separate"
    assert not torch.allclose(maps[:, :, 0], maps[:, :, -1], atol=1e-3), "frames must stay separate"


@pytest.mark.parametrize("variant", ["2", "2.3"])
def test_video_is_bit_identical(models, variant):
    from concept_attention import attach
    model = models[variant]
    patched, _ = attach(model, concepts_for(model), layers="all")
    for cfg in (1.0, 4.0):
        assert torch.equal(host.sample(model, *prompts(model), tl.video_latent(2), cfg=cfg, steps=2),
                           host.sample(patched, *prompts(model), tl.video_latent(2), cfg=cfg, steps=2))


def test_image_to_video_first_frame_held(models):
    """LTXV Img To Video Inplace: the start image is the held first latent frame (a noise mask, per-token
    timesteps); it is the video's first frame and mapped like the others, and the video stays identical."""
    from concept_attention import attach
    model = models["2.3"]
    concepts = concepts_for(model)
    patched, recorder = attach(model, concepts, layers=[1, 2])
    noise_mask = torch.ones(1, 1, 3, 2, 3)
    noise_mask[:, :, :1] = 0.0
    out, calls = sample_recorded(model, patched, *prompts(model), tl.video_latent(1), cfg=2.0, noise_mask=noise_mask)
    plain, _ = sample_recorded(model, model, *prompts(model), tl.video_latent(1), cfg=2.0, noise_mask=noise_mask)
    assert torch.equal(out, plain)
    torch.testing.assert_close(recorder.maps_for(out), ref.expected_maps(model.model.diffusion_model, calls,
                                                                         concepts.embeddings, [1, 2]),
                               rtol=1e-4, atol=1e-5)


def test_text_cross_attention_found_after_a_self_attention_of_the_same_lengths(models):
    """LTX-2's text is 1024 tokens long (the connector pads the prompt with registers): a one-frame video of
    32x32 tokens gives the self-attention 1024 queries and keys too. The maps must come from the text call."""
    from concept_attention import attach
    model = models["2"]
    concepts = concepts_for(model)
    patched, recorder = attach(model, concepts, layers=[0, 2])
    latent = tl.video_latent(1, frames=1, h=32, w=32)
    out, calls = sample_recorded(model, patched, *prompts(model), latent, cfg=2.0)
    assert calls[0]["blocks"][0]["x"].shape[1] == calls[0]["blocks"][0]["context"].shape[1] == 1024
    torch.testing.assert_close(recorder.maps(), ref.expected_maps(model.model.diffusion_model, calls,
                                                                  concepts.embeddings, [0, 2]), rtol=1e-4, atol=1e-5)


def test_each_concept_runs_alone_through_the_text_connector(models):
    """The connector attends over its whole (padded) prompt: concepts run as one prompt would give other keys."""
    from concept_attention import attach
    model = models["2"]
    concepts = concepts_for(model)
    patched, recorder = attach(model, concepts, layers=[1, 2])
    _, calls = sample_recorded(model, patched, *prompts(model), tl.video_latent(1), cfg=2.0)
    together = ref.expected_maps(model.model.diffusion_model, calls, concepts.embeddings, [1, 2], together=True)
    assert not torch.allclose(recorder.maps(), together, atol=1e-3)


def test_audio_video_latent_maps_its_video(models):
    """LTXV Concat AV Latent: the sampler packs the video and audio latents into one; the video's tokens are
    mapped (the audio's never: its own cross-attention module, unread), the masks node takes the nested LATENT
    or the video latent LTXV Separate AV Latent gives, and video and audio are bit-identical."""
    import comfy.nested_tensor
    from concept_attention import attach
    n = host.load_pack().nodes
    model = models["2"]
    concepts = concepts_for(model)
    patched, recorder = attach(model, concepts, layers=[1, 2])
    latent = comfy.nested_tensor.NestedTensor((tl.video_latent(2), tl.audio_latent(2)))
    out, calls = sample_recorded(model, patched, *prompts(model), latent, cfg=3.0)
    plain, _ = sample_recorded(model, model, *prompts(model), latent, cfg=3.0)
    assert out.is_nested and all(torch.equal(a, b) for a, b in zip(out.unbind(), plain.unbind()))
    maps = recorder.maps_for(out)
    expected = ref.expected_maps(model.model.diffusion_model, calls, concepts.embeddings, [1, 2])
    assert maps.shape == (2, 3, 3, 2, 3)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)
    reference.assert_maps_are_discriminating(maps, expected)
    nested_masks = n.ConceptAttentionMasks.execute(recorder, {"samples": out}).result[0]
    video_masks = n.ConceptAttentionMasks.execute(recorder, {"samples": out.unbind()[0]}).result[0]
    assert nested_masks.shape == (2 * 3 * 17, 64, 96) and torch.equal(nested_masks, video_masks)


def test_connector_output_from_the_encoder(models):
    """LTX-2 19B's encoder runs the checkpoint's text connectors itself (comfy/text_encoders/lt.py): its
    features (prompt and concepts alike) arrive processed, video and audio halves side by side, twice as wide."""
    from concept_attention import Concepts, attach
    model = models["2"]
    width = 2 * tl.text_width(model)
    concepts = Concepts(NAMES, torch.randn(3, width, generator=torch.Generator().manual_seed(11)))
    patched, recorder = attach(model, concepts, layers=[1, 2])
    positive, negative = (tl.conditioning(model, tokens, seed, processed=True) for tokens, seed in ((6, 0), (4, 1)))
    out, calls = sample_recorded(model, patched, positive, negative, tl.video_latent(2), cfg=3.0)
    expected = ref.expected_maps(model.model.diffusion_model, calls, concepts.embeddings, [1, 2], processed=True)
    torch.testing.assert_close(recorder.maps(), expected, rtol=1e-4, atol=1e-5)
    reference.assert_maps_are_discriminating(recorder.maps(), expected)
    with pytest.raises(ConceptAttentionError, match=rf"takes text features of width {width // 2} or {width}"):
        attach(model, Concepts(NAMES, torch.zeros(3, width + 1)))


def test_keyframe_guides_are_a_clear_error(models):
    """LTXV Add Guide appends guide frames to the latent (cropped after sampling): not mapped, said so."""
    from concept_attention import attach
    model = models["video"]
    patched, _ = attach(model, concepts_for(model))
    guides = {"keyframe_idxs": torch.zeros(1, 3, 6, 2)}
    positive, negative = (tl.conditioning(model, 6, seed, **guides) for seed in (0, 1))
    with pytest.raises(ConceptAttentionError, match=r"keyframe guides \(LTXV Add Guide"):
        host.sample(patched, positive, negative, tl.video_latent(1), cfg=2.0, steps=1)


def test_output_space_is_a_clear_error(models):
    from concept_attention import attach
    with pytest.raises(ConceptAttentionError, match=r"LTX is a cross-attention-only model: its prompt tokens are "
                                                    r"never updated.*'cross_attention' baseline only"):
        attach(models["2"], concepts_for(models["2"]), space="output")


def test_node_with_the_t5_encoder(models):
    """LTX-Video's concepts through its T5 encoder (the tiny one Mochi shares); the node's default space."""
    from tiny_encoders import tiny_mochi_clip
    n = host.load_pack().nodes
    model, clip = models["video"], tiny_mochi_clip()
    patched, handle = n.ConceptAttentionPatch.execute(model, clip, "dog, ball, grass", blocks="1-2").result
    positive, negative = (host.conditioning(clip, text) for text in ("a dog with a ball on the grass", ""))
    out = host.sample(patched, positive, negative, tl.video_latent(2), cfg=2.0, steps=2)
    masks, _, seg, _ = n.ConceptAttentionMasks.execute(handle, {"samples": out}).result
    assert masks.shape == (2 * 3 * 17, 64, 96)  # per video: each concept's 17 decoded frames in a row
    per_frame = masks.reshape(2, 3, 17, 64, 96)
    torch.testing.assert_close(per_frame.sum(1), torch.ones(2, 17, 64, 96))
    assert torch.equal(per_frame[:, :, 1], per_frame[:, :, 8]) and not torch.equal(per_frame[:, :, 0],
                                                                                     per_frame[:, :, 1])


def test_frame_layout_is_the_vaes(models):
    """The frame expansion follows ComfyUI's own LTX video VAE (comfy.sd.VAE, built from the state dict keys it
    detects it by; weights never run)."""
    import comfy.sd
    from concept_attention.adapters import adapter_for
    vae = comfy.sd.VAE(sd={"decoder.up_blocks.0.res_blocks.0.conv1.conv.weight": torch.zeros(1024, 1024, 3, 3, 3),
                           "encoder.down_blocks.1.conv.conv.bias": torch.zeros(64)})
    for variant in ("2", "video"):
        assert vae.latent_channels == models[variant].model.latent_format.latent_channels
        layout = adapter_for(models[variant]).frame_layout()
        assert layout.compression == vae.temporal_compression_decode()
        assert_frames_follow_the_vae(layout, vae, latent_frames=4, input_frames=29)


def test_from_image_stops_after_the_last_block(models):
    from concept_attention.from_image import maps_from_latent
    model = models["2"]
    dm = model.model.diffusion_model
    concepts = concepts_for(model)
    seen = [0] * len(dm.transformer_blocks)
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, seen[i] + 1))
               for i, b in enumerate(dm.transformer_blocks)]
    inputs = ref.CrossAttentionInputs(dm)
    try:
        result = maps_from_latent(model, concepts, tl.video_latent(1), tl.conditioning(model, 6, 0),
                                  noise_level=0.5, samples=2, seed=3, layers=[1])
    finally:
        inputs.remove()
        for h in handles:
            h.remove()
    assert seen == [2, 2, 0]  # two samples, each stopped after block 1
    per_sample = [ref.expected_maps(dm, [call], concepts.embeddings, [1]) for call in inputs.calls]
    torch.testing.assert_close(result.maps, sum(per_sample) / 2, rtol=1e-4, atol=1e-5)
    assert result.at_image_size().shape == (1, 3, 17, 64, 96)


def test_defaults():
    from concept_attention.adapters import adapter_for
    assert adapter_for(tl.tiny_ltx("2", num_layers=8)).default_blocks() == [6, 7]  # the last quarter
    assert adapter_for(tl.tiny_ltx("video", num_layers=28)).default_blocks() == list(range(21, 28))
