"""HunyuanVideo 1.5 / 1.0 / HunyuanImage 2.1: tiny models built through ComfyUI's model configs, driven through
ComfyUI's samplers, against the masked-forward re-derivation in reference_hunyuan_video.py."""

import pytest
import torch

import host
from video_checks import assert_frames_follow_the_vae
import reference
import reference_hunyuan_video as ref
import tiny_hunyuan_video as thv
from concept_attention.errors import ConceptAttentionError

pytestmark = pytest.mark.host

NAMES = ("dog", "ball", "grass")


@pytest.fixture(scope="module")
def models():
    return {name: thv.tiny_hunyuan_video(name) for name in ("1.5", "1.0", "image-2.1")}


@pytest.fixture(scope="module")
def concepts():
    from concept_attention import Concepts
    return Concepts(NAMES, torch.randn(3, 32, generator=torch.Generator().manual_seed(11)))


def prompts(dm, **extra):
    """Positive and negative conditioning for a tiny model, with the pooled vector / guidance it takes."""
    if dm.vector_in is not None:
        extra["pooled_output"] = torch.randn(1, 32, generator=torch.Generator().manual_seed(4))
    if dm.params.guidance_embed:
        extra["guidance"] = 5.0
    return thv.conditioning(6, 0, **extra), thv.conditioning(4, 1, **extra)


def latent_for(dm, batch=2, frames=3, h=4, w=6):
    latent = thv.video_latent(batch, dm.params.out_channels, frames, h, w)
    return latent if len(dm.patch_size) == 3 else latent[:, :, 0]


def sample_recorded(model, patched, positive, negative, latent, *, cfg, steps=2, **kw):
    """Sample `patched` while recording the inputs of `model`'s double blocks in the real forward passes."""
    dm = model.model.diffusion_model
    inputs = ref.BlockInputs(dm)
    try:
        out = host.sample(patched, positive, negative, latent, cfg=cfg, steps=steps, **kw)
    finally:
        inputs.remove()
    return out, inputs.calls


@pytest.mark.parametrize("variant,cfg", [("1.5", 1.0), ("1.5", 3.0), ("1.0", 3.0), ("image-2.1", 3.0)])
def test_maps_equal_the_masked_forward(models, concepts, variant, cfg):
    from concept_attention import attach
    model = models[variant]
    dm = model.model.diffusion_model
    patched, recorder = attach(model, concepts, layers=[0, 2])
    positive, negative = prompts(dm)
    latent = latent_for(dm)
    _, calls = sample_recorded(model, patched, positive, negative, latent, cfg=cfg)
    expected = ref.expected_maps(dm, calls, concepts.embeddings, [0, 2])
    maps = recorder.maps()
    assert maps.shape == (2, 3, *ref.grid(dm, latent.shape))
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)
    reference.assert_maps_are_discriminating(maps, expected)
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows must stay separate"
    if maps.ndim == 5:
        assert not torch.allclose(maps[:, :, 0], maps[:, :, -1], atol=1e-3), "frames must stay separate"


def test_video_is_bit_identical(models, concepts):
    from concept_attention import attach
    model = models["1.5"]
    patched, _ = attach(model, concepts)
    positive, negative = prompts(model.model.diffusion_model, **i2v_conditioning())
    latent = latent_for(model.model.diffusion_model)
    for cfg in (1.0, 4.0):
        assert torch.equal(host.sample(model, positive, negative, latent, cfg=cfg, steps=2),
                           host.sample(patched, positive, negative, latent, cfg=cfg, steps=2))


def test_half_precision(models, concepts):
    """bf16 and fp16 weights: the video stays bit-identical, the maps stay close to the fp32 model's."""
    from concept_attention import attach
    fp32 = models["1.5"]
    positive, negative = prompts(fp32.model.diffusion_model)
    latent = latent_for(fp32.model.diffusion_model, batch=1)
    patched, recorder = attach(fp32, concepts)
    host.sample(patched, positive, negative, latent, cfg=2.0, steps=2)
    for dtype in (torch.bfloat16, torch.float16):
        model = thv.tiny_hunyuan_video("1.5", dtype=dtype)
        patched, half = attach(model, concepts)
        assert torch.equal(host.sample(model, positive, negative, latent, cfg=2.0, steps=2),
                           host.sample(patched, positive, negative, latent, cfg=2.0, steps=2))
        maps = half.maps()
        assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
        assert (maps - recorder.maps()).abs().max() < 0.15


def i2v_conditioning(frames=3, h=4, w=6):
    """What HunyuanVideo15ImageToVideo adds (start image as concat channels of the first latent frame, its
    SigLIP tokens), plus byT5 glyph tokens."""
    gen = torch.Generator().manual_seed(8)
    concat = torch.zeros(1, 32, frames, h, w)
    concat[:, :, :1] = torch.randn(1, 32, 1, h, w, generator=gen)
    mask = torch.ones(1, 1, frames, h, w)
    mask[:, :, :1] = 0.0
    return {"concat_latent_image": concat, "concat_mask": mask, "clip_vision_output": thv.VisionOutput(),
            "conditioning_byt5small": torch.randn(1, 4, 1472, generator=gen)}


def test_i2v_vision_and_byt5_tokens_are_text_not_mapped(models, concepts):
    """HunyuanVideo 1.5 I2V: the start frame's SigLIP tokens and byT5 tokens join the text stream; only the
    video's own tokens are mapped, and concepts never attend to those text-stream tokens."""
    from concept_attention import attach
    model = models["1.5"]
    dm = model.model.diffusion_model
    patched, recorder = attach(model, concepts, layers=[1, 2])
    positive, negative = prompts(dm, **i2v_conditioning())
    latent = latent_for(dm, batch=1)
    _, calls = sample_recorded(model, patched, positive, negative, latent, cfg=2.0)
    block_inputs = calls[0]["blocks"][0]
    assert block_inputs["txt"].shape[1] == 5 + 4 + 6  # vision, byT5, then the prompt
    assert block_inputs["img"].shape[1] == 3 * 4 * 6  # the video's tokens only
    torch.testing.assert_close(recorder.maps(), ref.expected_maps(dm, calls, concepts.embeddings, [1, 2]),
                               rtol=1e-4, atol=1e-5)
    assert recorder.maps().shape == (1, 3, 3, 4, 6)


def test_reference_latent_tokens_are_never_mapped_nor_keys(models, concepts):
    """HunyuanVideo 1.0 I2V 'custom' guidance: ref_latent tokens sit before the video in the image stream."""
    from concept_attention import attach
    model = models["1.0"]
    dm = model.model.diffusion_model
    patched, recorder = attach(model, concepts, layers=[1, 2])
    reference_latent = torch.randn(1, 16, 1, 4, 6, generator=torch.Generator().manual_seed(9))
    positive, negative = prompts(dm, ref_latent=reference_latent)
    latent = latent_for(dm, batch=1)
    assert torch.equal(host.sample(model, positive, negative, latent, cfg=2.0, steps=2),
                       host.sample(patched, positive, negative, latent, cfg=2.0, steps=2))
    _, calls = sample_recorded(model, patched, positive, negative, latent, cfg=2.0)
    assert calls[0]["blocks"][0]["img"].shape[1] == 2 * 3 + 3 * 2 * 3  # reference + generated tokens
    assert recorder.maps().shape == (1, 3, 3, 2, 3)
    torch.testing.assert_close(recorder.maps(), ref.expected_maps(dm, calls, concepts.embeddings, [1, 2]),
                               rtol=1e-4, atol=1e-5)


def test_first_frame_replace_mode(models, concepts):
    """HunyuanVideo 1.0 I2V 'v2 (replace)': the start image is the held first latent frame, modulated apart
    (guiding_frame_index); it is the video's first frame and mapped like the others."""
    import nodes
    from concept_attention import attach
    model = models["1.0"]
    dm = model.model.diffusion_model
    patched, recorder = attach(model, concepts, layers=[1, 2])
    positive, negative = prompts(dm, guiding_frame_index=0)
    latent = latent_for(dm, batch=1)
    noise_mask = torch.ones(1, 1, 3, 4, 6)
    noise_mask[:, :, :1] = 0.0
    start = {"samples": latent, "noise_mask": noise_mask}
    inputs = ref.BlockInputs(dm)
    try:
        out = nodes.common_ksampler(patched, 0, 2, 2.0, "euler", "simple", positive, negative, start)[0]["samples"]
    finally:
        inputs.remove()
    plain = nodes.common_ksampler(model, 0, 2, 2.0, "euler", "simple", positive, negative, start)[0]["samples"]
    assert torch.equal(out, plain)
    assert inputs.calls[0]["blocks"][0]["vec"].ndim == 3  # first frame modulated apart
    torch.testing.assert_close(recorder.maps_for(out), ref.expected_maps(dm, inputs.calls, concepts.embeddings,
                                                                         [1, 2]), rtol=1e-4, atol=1e-5)


def test_concept_stream_rules(models, concepts):
    """Each rule changes the maps, so a pack that broke one would fail: zero pooled vector (1.0), each concept
    through the TokenRefiner alone, concepts at the text position (all-zero ids)."""
    from concept_attention import attach
    for variant in ("1.0", "1.5"):
        model = models[variant]
        dm = model.model.diffusion_model
        patched, recorder = attach(model, concepts, layers=[1, 2])
        positive, negative = prompts(dm)
        _, calls = sample_recorded(model, patched, positive, negative, latent_for(dm, batch=1), cfg=2.0)
        maps = recorder.maps()
        torch.testing.assert_close(maps, ref.expected_maps(dm, calls, concepts.embeddings, [1, 2]),
                                   rtol=1e-4, atol=1e-5)
        wrong = [dict(refine_together=True), dict(concept_position=[1, 1, 1])]
        if variant == "1.0":
            assert calls[0]["y"].abs().sum() > 0, "the video stream keeps the prompt's pooled vector"
            wrong.append(dict(zero_pooled=False))
        for options in wrong:
            other = ref.expected_maps(dm, calls, concepts.embeddings, [1, 2], **options)
            assert not torch.allclose(maps, other, atol=1e-4), f"maps do not depend on {options}"


def test_frame_layout_is_the_vaes(models):
    """The frame expansion follows ComfyUI's own video VAEs of the family (comfy.sd.VAE, built from the state
    dict keys it detects them by; weights never run): their temporal compression, their decoded frame count
    per latent frame count, and which latent frame each frame joins when encoding."""
    import comfy.sd
    from concept_attention.adapters import adapter_for
    signatures = {  # comfy.sd.VAE's detection keys of the HunyuanVideo 1.5 and 1.0 VAEs
        "1.5": {"decoder.conv_in.conv.weight": torch.zeros(1024, 32, 3, 3, 3)},
        "1.0": {"decoder.conv_in.conv.weight": torch.zeros(512, 16, 3, 3, 3),
                "post_quant_conv.weight": torch.zeros(16, 16, 1, 1, 1)},
    }
    for variant, sd in signatures.items():
        vae = comfy.sd.VAE(sd=sd)
        layout = adapter_for(models[variant]).frame_layout()
        assert layout.compression == vae.temporal_compression_decode()
        assert_frames_follow_the_vae(layout, vae)


def test_from_image_maps_a_video_in_one_partial_pass(models, concepts):
    from concept_attention.from_image import maps_from_latent
    model = models["1.5"]
    dm = model.model.diffusion_model
    seen = {"double": [0] * 3, "single": [0]}
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen["double"].__setitem__(i, seen["double"][i] + 1))
               for i, b in enumerate(dm.double_blocks)]
    handles += [dm.single_blocks[0].register_forward_pre_hook(lambda m, a: seen["single"].__setitem__(0, 1))]
    inputs = ref.BlockInputs(dm)
    video = latent_for(dm, batch=1)
    try:
        result = maps_from_latent(model, concepts, video, thv.conditioning(6, 0, pooled_output=None),
                                  noise_level=0.5, samples=2, seed=3, layers=[1])
    finally:
        inputs.remove()
        for h in handles:
            h.remove()
    assert seen == {"double": [2, 2, 0], "single": [0]}  # one video latent, stopped after block 1, two samples
    per_sample = [ref.expected_maps(dm, [call], concepts.embeddings, [1]) for call in inputs.calls]
    torch.testing.assert_close(result.maps, sum(per_sample) / 2, rtol=1e-4, atol=1e-5)
    assert result.maps.shape == (1, 3, 3, 4, 6) and result.image_size == (64, 96)
    assert result.at_image_size().shape == (1, 3, 9, 64, 96)


def test_nodes_give_per_frame_masks(models):
    """The pack's nodes on a HunyuanVideo 1.5 run (concepts through the tiny Qwen2.5-VL encoder)."""
    from tiny_encoders import tiny_hunyuan15_clip
    n = host.load_pack().nodes
    model, clip = models["1.5"], tiny_hunyuan15_clip()
    patched, handle = n.ConceptAttentionPatch.execute(model, clip, "dog, ball, grass", blocks="1-2").result
    positive, negative = (host.conditioning(clip, text) for text in ("a dog with a ball", ""))
    out = host.sample(patched, positive, negative, latent_for(model.model.diffusion_model), cfg=2.0, steps=2)
    frames = torch.rand(2 * 9, 64, 96, 3)  # the two videos' decoded frames, as VAE Decode gives them
    masks, heat, seg, concept_maps = n.ConceptAttentionMasks.execute(handle, {"samples": out}, frames).result
    assert masks.shape == (2 * 3 * 9, 64, 96)  # per video: each concept's 9 frames in a row
    assert heat.shape[0] == 2 * 3 * 9 and seg.shape[0] == 2 * 9  # frames with their words on a strip below
    assert heat.shape[1] > 64 and seg.shape[1] > 64 and heat.shape[2:] == seg.shape[2:] == (96, 3)
    per_frame = masks.reshape(2, 3, 9, 64, 96)
    torch.testing.assert_close(per_frame.sum(1), torch.ones(2, 9, 64, 96))
    assert torch.equal(per_frame[:, :, 1], per_frame[:, :, 4]) and not torch.equal(per_frame[:, :, 0], per_frame[:, :, 1])
    ball = n.ConceptAttentionSelectMask.execute(concept_maps, "Ball", "argmax").result[0]
    assert ball.shape == (2 * 9, 64, 96)
    assert torch.equal(ball, (per_frame.argmax(1) == 1).float().flatten(0, 1))
    with pytest.raises(ConceptAttentionError, match=r"has 9 frames, but these maps are of 2 video\(s\) of 9"):
        n.ConceptAttentionMasks.execute(handle, {"samples": out}, frames[:9])


class FrameGroupingVAE:
    """Stand-in video VAE for the node's plumbing (only `encode` is used): frames grouped in time as ComfyUI's
    causal video VAEs do (the first alone, then 4 per latent frame; an incomplete last group is dropped), 16x
    spatial average pooling, 32 channels."""

    def encode(self, pixels):
        frames = (pixels.shape[0] + 3) // 4
        groups = [pixels[:1]] + [pixels[1 + 4 * (t - 1): 1 + 4 * t] for t in range(1, frames)]
        pooled = [torch.nn.functional.avg_pool2d(g.mean(0).movedim(-1, 0)[None], 16) for g in groups]
        return torch.stack(pooled, dim=2).repeat(1, 11, 1, 1, 1)[:, :32]


def test_from_image_node_maps_a_video(models):
    from tiny_encoders import tiny_hunyuan15_clip
    node, clip = host.load_pack().nodes.ConceptAttentionFromImage, tiny_hunyuan15_clip()
    video = torch.rand(10, 64, 96, 3)  # 10 frames: the encoder uses 9 (3 latent frames), the masks cover all 10
    masks, heat, seg, concept_maps = node.execute(models["1.5"], clip, "dog, grass", vae=FrameGroupingVAE(),
                                                  image=video).result
    assert concept_maps.maps.shape == (1, 2, 3, 4, 6)
    assert masks.shape == (2 * 10, 64, 96) and heat.shape[0] == 2 * 10 and seg.shape[0] == 10
    clips = masks.reshape(2, 10, 64, 96)
    assert torch.equal(clips[:, 9], clips[:, 8])  # the frame the encoder dropped takes the last latent frame
    # a sampler's video LATENT, mapped without a VAE; drawn over its 9 decoded frames
    latent = {"samples": latent_for(models["1.5"].model.diffusion_model, batch=1)}
    masks, _, seg, _ = node.execute(models["1.5"], clip, "dog, grass", latent=latent, image=video[:9]).result
    assert masks.shape == (2 * 9, 64, 96) and seg.shape[0] == 9
    with pytest.raises(ConceptAttentionError, match="has 10 frames, but these maps are of 1 video"):
        node.execute(models["1.5"], clip, "dog, grass", latent=latent, image=video)
    with pytest.raises(ConceptAttentionError, match=r"latents of 32 channels \(\[batch, 32, frames, height/16"):
        node.execute(models["1.5"], clip, "dog, grass", latent={"samples": torch.zeros(1, 32, 4, 6)})


def test_context_windows_are_a_clear_error(models, concepts):
    """ComfyUI's Context Windows run the model on windows of frames: maps of one window must not pass for the
    whole video's."""
    import comfy.context_windows
    from comfy_extras.nodes_context_windows import ContextWindowsManualNode
    from concept_attention import attach
    windowed = ContextWindowsManualNode.execute(
        models["1.5"], 2, 1, comfy.context_windows.ContextSchedules.STATIC_STANDARD, 1, False, "pyramid", 2,
        False).result[0]
    patched, recorder = attach(windowed, concepts)
    out = host.sample(patched, *prompts(windowed.model.diffusion_model), latent_for(windowed.model.diffusion_model,
                                                                                   batch=1, frames=4), steps=2)
    with pytest.raises(ConceptAttentionError, match=r"only part of this latent \(a token grid of \(2, 4, 6\) where "
                                                    r"the latent's is \(4, 4, 6\)\).*Context Windows"):
        recorder.maps_for(out)


def test_defaults_and_unsupported_models():
    import comfy.model_patcher
    import comfy.supported_models
    from concept_attention import Concepts, attach
    from concept_attention.adapters import adapter_for

    assert adapter_for(thv.tiny_hunyuan_video("1.5", depth=8)).default_blocks() == [6, 7]  # the last quarter
    refiner = comfy.supported_models.HunyuanImage21Refiner({**thv.HI21, "patch_size": [1, 1, 1],
                                                            "axes_dim": [8, 12, 12]}).get_model({})
    refiner = comfy.model_patcher.ModelPatcher(refiner, torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ConceptAttentionError, match=r"does not support this model: HunyuanImage21Refiner.*"
                                                    r"supported: .*HunyuanVideo \(HunyuanVideo 1.5"):
        attach(refiner, Concepts(["a"], torch.zeros(1, 32)))
