"""Wan 2.1 / 2.2 (cross-attention baseline only): tiny models built through ComfyUI's model configs, driven
through ComfyUI's samplers, against the explicit re-derivation in reference_wan.py."""

import pytest
import torch

import host
from video_checks import assert_frames_follow_the_vae
import reference
import reference_wan as ref
import tiny_wan as tw
from concept_attention.errors import ConceptAttentionError

pytestmark = pytest.mark.host

NAMES = ("dog", "ball", "grass")


@pytest.fixture(scope="module")
def models():
    return {name: tw.tiny_wan(name) for name in ("2.1", "2.1-i2v", "2.2-5b")}


@pytest.fixture(scope="module")
def concepts():
    from concept_attention import Concepts
    return Concepts(NAMES, torch.randn(3, 32, generator=torch.Generator().manual_seed(11)))


def i2v_conditioning(frames=3, h=4, w=6, clip_tokens=5):
    """What WanImageToVideo adds: the start image as concat channels of the first latent frame (with its
    mask) and, when a CLIP vision encoding is wired, its tokens."""
    concat = torch.zeros(1, 16, frames, h, w)
    concat[:, :, :1] = torch.randn(1, 16, 1, h, w, generator=torch.Generator().manual_seed(8))
    mask = torch.ones(1, 1, frames, h, w)
    mask[:, :, :1] = 0.0
    extra = {"concat_latent_image": concat, "concat_mask": mask}
    if clip_tokens:
        extra["clip_vision_output"] = tw.VisionOutput(clip_tokens)
    return extra


def prompts(variant, tokens=(6, 4), **extra):
    if variant == "2.1-i2v" and not extra:
        extra = i2v_conditioning()
    return tw.conditioning(tokens[0], 0, **extra), tw.conditioning(tokens[1], 1, **extra)


def latent_for(model, batch=2, frames=3, h=4, w=6):
    return tw.video_latent(batch, model.model.diffusion_model.out_dim, frames, h, w)


def sample_recorded(model, patched, positive, negative, latent, *, cfg, steps=2):
    """Sample `patched` while recording each block's text cross-attention input in the real forward passes."""
    inputs = ref.CrossAttentionInputs(model.model.diffusion_model)
    try:
        out = host.sample(patched, positive, negative, latent, cfg=cfg, steps=steps)
    finally:
        inputs.remove()
    return out, inputs.calls


@pytest.mark.parametrize("variant,cfg", [("2.1", 1.0), ("2.1", 3.0), ("2.2-5b", 3.0), ("2.1-i2v", 3.0)])
def test_maps_equal_the_rederivation(models, concepts, variant, cfg):
    from concept_attention import attach
    model = models[variant]
    dm = model.model.diffusion_model
    patched, recorder = attach(model, concepts, layers=[1, 3])
    assert recorder.space == "cross_attention"  # 'auto': the baseline, the only space Wan has
    latent = latent_for(model)
    _, calls = sample_recorded(model, patched, *prompts(variant), latent, cfg=cfg)
    maps = recorder.maps()
    expected = ref.expected_maps(dm, calls, concepts.embeddings, [1, 3])
    assert maps.shape == (2, 3, 3, 2, 3)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)
    reference.assert_maps_are_discriminating(maps, expected)
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows must stay separate"
    assert not torch.allclose(maps[:, :, 0], maps[:, :, -1], atol=1e-3), "frames must stay separate"


@pytest.mark.parametrize("variant", ["2.1-i2v", "2.2-5b"])
def test_video_is_bit_identical(models, concepts, variant):
    from concept_attention import attach
    model = models[variant]
    patched, _ = attach(model, concepts, layers="all")
    latent = latent_for(model)
    for cfg in (1.0, 4.0):
        assert torch.equal(host.sample(model, *prompts(variant), latent, cfg=cfg, steps=2),
                           host.sample(patched, *prompts(variant), latent, cfg=cfg, steps=2))


@pytest.mark.parametrize("clip_tokens", [6, None])
def test_text_cross_attention_found_among_calls_of_the_same_lengths(models, concepts, clip_tokens):
    """One latent frame of 2x3 tokens, 6 prompt tokens and 6 CLIP tokens: the block's self-attention, its
    image cross-attention and its text cross-attention all have 6 queries and 6 keys (without CLIP vision the
    image call reads the whole text context). The maps must still come from the text call, the last."""
    from concept_attention import attach
    model = models["2.1-i2v"]
    dm = model.model.diffusion_model
    patched, recorder = attach(model, concepts, layers=[0, 2])
    extra = i2v_conditioning(frames=1, clip_tokens=clip_tokens)
    latent = latent_for(model, batch=1, frames=1)
    out, calls = sample_recorded(model, patched, *prompts("2.1-i2v", (6, 6), **extra), latent, cfg=2.0)
    block = calls[0]["blocks"][0]
    assert block["x"].shape[1] == 6 and block["context"].shape[1] == (12 if clip_tokens else 6)
    torch.testing.assert_close(recorder.maps(), ref.expected_maps(dm, calls, concepts.embeddings, [0, 2]),
                               rtol=1e-4, atol=1e-5)
    assert torch.equal(out, host.sample(model, *prompts("2.1-i2v", (6, 6), **extra), latent, cfg=2.0, steps=2))


def test_reference_image_tokens_are_not_mapped(concepts):
    """A reference image (`ref_conv`, Wan 2.2 Fun's `reference_latents`) puts its tokens before the video's."""
    from concept_attention import attach
    model = tw.tiny_wan("2.1", in_dim_ref_conv=16)
    dm = model.model.diffusion_model
    patched, recorder = attach(model, concepts, layers=[1, 3])
    reference_latent = torch.randn(1, 16, 1, 4, 6, generator=torch.Generator().manual_seed(9))
    positive, negative = prompts("2.1", reference_latents=[reference_latent])
    latent = latent_for(model, batch=1)
    out, calls = sample_recorded(model, patched, positive, negative, latent, cfg=2.0)
    assert calls[0]["blocks"][1]["x"].shape[1] == 2 * 3 + 3 * 2 * 3  # reference, then the video
    torch.testing.assert_close(recorder.maps(), ref.expected_maps(dm, calls, concepts.embeddings, [1, 3],
                                                                  image_start=6), rtol=1e-4, atol=1e-5)
    assert torch.equal(out, host.sample(model, positive, negative, latent, cfg=2.0, steps=2))


def test_output_space_is_a_clear_error(models, concepts):
    from concept_attention import attach
    for space in ("output", "value"):
        with pytest.raises(ConceptAttentionError, match=rf"Wan is a cross-attention-only model: its prompt tokens "
                                                        rf"are never updated.*\(the '{space}' space\) does not "
                                                        rf"exist.*'cross_attention' baseline only"):
            attach(models["2.1"], concepts, space=space)
    assert attach(models["2.1"], concepts, space="cross_attention")[1].space == "cross_attention"


def test_node_labels_and_space_choice(models):
    """The patch node: described as the baseline for Wan, 'auto' (its default) picks it, 'output' is refused."""
    from tiny_encoders import tiny_wan_clip
    n = host.load_pack().nodes
    schema = n.ConceptAttentionPatch.define_schema()
    assert "Wan (Wan 2.1 and 2.2" in schema.description and "the cross-attention baseline only" in schema.description
    space = next(i for i in schema.inputs if i.id == "space")
    assert space.default == "auto" and "Wan" in space.tooltip
    model, clip = models["2.1"], tiny_wan_clip()
    with pytest.raises(ConceptAttentionError, match="does not exist for it"):
        n.ConceptAttentionPatch.execute(model, clip, "dog, ball", space="output")
    patched, handle = n.ConceptAttentionPatch.execute(model, clip, "dog, ball, grass", blocks="2-3").result
    positive, negative = (host.conditioning(clip, text) for text in ("a dog with a ball on the grass", ""))
    out = host.sample(patched, positive, negative, latent_for(model), cfg=2.0, steps=2)
    masks, heat, seg, _ = n.ConceptAttentionMasks.execute(handle, {"samples": out}).result
    assert masks.shape == (2 * 3 * 9, 32, 48)  # per video: each concept's 9 decoded frames in a row
    per_frame = masks.reshape(2, 3, 9, 32, 48)
    torch.testing.assert_close(per_frame.sum(1), torch.ones(2, 9, 32, 48))
    assert not torch.equal(per_frame[:, :, 0], per_frame[:, :, 1])


def test_frame_layout_is_the_vaes(models):
    """The frame expansion follows ComfyUI's own Wan 2.1 and Wan 2.2 VAEs (comfy.sd.VAE, built from the state
    dict keys it detects them by; weights never run)."""
    import comfy.sd
    from concept_attention.adapters import adapter_for
    signatures = {
        "2.1": {"decoder.middle.0.residual.0.gamma": torch.zeros(32, 1, 1, 1),
                "decoder.head.0.gamma": torch.zeros(8, 1, 1, 1), "encoder.conv1.weight": torch.zeros(8, 3, 3, 3, 3),
                "decoder.head.2.weight": torch.zeros(3, 8, 3, 3, 3)},
        "2.2-5b": {"decoder.middle.0.residual.0.gamma": torch.zeros(1024, 1, 1, 1),
                   "decoder.upsamples.0.upsamples.0.residual.2.weight": torch.zeros(1024, 1024, 3, 3, 3)},
    }
    for variant, sd in signatures.items():
        vae = comfy.sd.VAE(sd=sd)
        assert vae.latent_channels == models[variant].model.latent_format.latent_channels
        layout = adapter_for(models[variant]).frame_layout()
        assert layout.compression == vae.temporal_compression_decode()
        assert_frames_follow_the_vae(layout, vae)


def test_from_image_stops_after_the_last_block(models, concepts):
    from concept_attention.from_image import maps_from_latent
    model = models["2.1"]
    dm = model.model.diffusion_model
    seen = [0] * len(dm.blocks)
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, seen[i] + 1))
               for i, b in enumerate(dm.blocks)]
    inputs = ref.CrossAttentionInputs(dm)
    try:
        result = maps_from_latent(model, concepts, latent_for(model, batch=1), tw.conditioning(6, 0),
                                  noise_level=0.5, samples=2, seed=3, layers=[1])
    finally:
        inputs.remove()
        for h in handles:
            h.remove()
    assert seen == [2, 2, 0, 0]  # two samples, each stopped after block 1
    per_sample = [ref.expected_maps(dm, [call], concepts.embeddings, [1]) for call in inputs.calls]
    torch.testing.assert_close(result.maps, sum(per_sample) / 2, rtol=1e-4, atol=1e-5)
    assert result.at_image_size().shape == (1, 3, 9, 32, 48)


def test_defaults_and_unsupported_models(concepts):
    import comfy.model_patcher
    import comfy.supported_models
    from concept_attention import attach
    from concept_attention.adapters import adapter_for

    assert adapter_for(tw.tiny_wan("2.1", num_layers=8)).default_blocks() == [6, 7]  # the last quarter
    with pytest.raises(ConceptAttentionError, match=r"valid indices are 0-3"):
        attach(tw.tiny_wan("2.1"), concepts, layers=[4])
    causal = comfy.supported_models.WAN21_CausalAR_T2V({**tw.VARIANTS["2.1"][1], "causal_ar": True}).get_model({})
    causal = comfy.model_patcher.ModelPatcher(causal, torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ConceptAttentionError, match=r"does not support this model: WAN21_CausalAR_T2V.*supported: "
                                                    r".*Wan \(Wan 2.1 and 2.2"):
        attach(causal, concepts)
