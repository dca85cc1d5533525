"""CogVideoX 1.0 / 1.5 (T2V, I2V, Inpaint): tiny models built through ComfyUI's model configs, driven through
ComfyUI's samplers (v-prediction), against the masked-forward re-derivation in reference_cogvideox.py."""

import pytest
import torch

import host
from video_checks import assert_frames_follow_the_vae, check_from_image_node_on_a_video_latent
import reference
import reference_cogvideox as ref
import tiny_cogvideox as tc
from concept_attention.errors import ConceptAttentionError

pytestmark = pytest.mark.host

NAMES = ("dog", "ball", "grass")


@pytest.fixture(scope="module")
def models():
    return {name: tc.tiny_cogvideox(name) for name in tc.VARIANTS}


@pytest.fixture(scope="module")
def concepts():
    from concept_attention import Concepts
    return Concepts(NAMES, torch.randn(3, 32, generator=torch.Generator().manual_seed(11)))


def image_condition(variant, frames=3, h=4, w=6):
    """What the I2V / Inpaint conditioning nodes add: the start image's latent (first frame, 16 channels), or
    the mask's and the masked video's latents (32 channels over all frames)."""
    gen = torch.Generator().manual_seed(8)
    if variant == "1.5-i2v":
        return {"concat_latent_image": torch.randn(1, 16, 1, h, w, generator=gen)}
    if variant == "1.5-inpaint":
        return {"concat_latent_image": torch.randn(1, 32, frames, h, w, generator=gen)}
    return {}


def prompts(variant, **extra):
    extra = {**image_condition(variant), **extra}
    return tc.conditioning(6, 0, **extra), tc.conditioning(4, 1, **extra)


def sample_recorded(model, patched, positive, negative, latent, *, cfg, steps=2):
    """Sample `patched` while recording the inputs of `model`'s blocks in the real forward passes."""
    inputs = ref.BlockInputs(model.model.diffusion_model)
    try:
        out = host.sample(patched, positive, negative, latent, cfg=cfg, steps=steps)
    finally:
        inputs.remove()
    return out, inputs.calls


def test_models_are_what_the_tests_claim(models):
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.cogvideox import CogVideoXAdapter
    for name, model in models.items():
        dm = model.model.diffusion_model
        assert type(adapter_for(model)) is CogVideoXAdapter
        assert type(model.model.model_sampling).__name__ == "ModelSampling"
        assert (dm.patch_size_t == 2) == name.startswith("1.5")
        assert dm.use_rotary_positional_embeddings == (name != "2b")
        assert (dm.ofs_embedding_linear_1 is not None) == (name == "1.5-i2v")
    import comfy.model_sampling
    assert isinstance(models["5b"].model.model_sampling, comfy.model_sampling.V_PREDICTION_DDPM)


@pytest.mark.parametrize("variant,cfg", [("2b", 1.0), ("5b", 3.0), ("1.5", 1.0), ("1.5-i2v", 3.0),
                                         ("1.5-inpaint", 3.0)])
def test_maps_equal_the_masked_forward(models, concepts, variant, cfg):
    from concept_attention import attach
    model = models[variant]
    dm = model.model.diffusion_model
    patched, recorder = attach(model, concepts, layers=[0, 2])
    positive, negative = prompts(variant)
    latent = tc.video_latent(frames=3)  # 1.5: two token frames, the second padded
    _, calls = sample_recorded(model, patched, positive, negative, latent, cfg=cfg)
    expected = ref.expected_maps(dm, calls, concepts.embeddings, [0, 2])
    maps = recorder.maps()
    assert maps.shape == (2, 3, 3, 2, 3)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)
    reference.assert_maps_are_discriminating(maps.flatten(2, 3), expected.flatten(2, 3))
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 3, 2, 3))
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows must stay separate"
    assert not torch.allclose(maps[:, :, 0], maps[:, :, -1], atol=1e-3), "frames must stay separate"


def test_masked_forward_is_the_models_own_forward(models, concepts):
    """The reference's text and video rows of each block equal what the next block received: its math is the
    model's (expert adaLN, QK norms, RoPE, MLP), and the concept mask leaves the prompt and the video untouched."""
    for variant in ("2b", "1.5-i2v"):
        model = models[variant]
        positive, negative = prompts(variant)
        _, calls = sample_recorded(model, model, positive, negative, tc.video_latent(), cfg=2.0)
        for call in calls:
            _, outputs = ref.masked_forward(model.model.diffusion_model, call, concepts.embeddings, [2])
            for i in (0, 1):
                img, txt = outputs[i]
                torch.testing.assert_close(img, call["blocks"][i + 1]["hidden_states"], rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(txt, call["blocks"][i + 1]["encoder_hidden_states"], rtol=1e-4,
                                           atol=1e-4)


def test_video_is_bit_identical(models, concepts):
    from concept_attention import attach
    for variant in ("5b", "1.5-i2v"):
        model = models[variant]
        patched, _ = attach(model, concepts, layers="all")
        positive, negative = prompts(variant)
        for cfg in (1.0, 4.0):
            latent = tc.video_latent(frames=4)
            assert torch.equal(host.sample(model, positive, negative, latent, cfg=cfg, steps=2),
                               host.sample(patched, positive, negative, latent, cfg=cfg, steps=2))


def test_half_precision(concepts):
    """bf16 weights: the video stays bit-identical, the maps stay close to the fp32 model's."""
    from concept_attention import attach
    positive, negative = prompts("1.5")
    latent = tc.video_latent(batch=1)
    patched, recorder = attach(tc.tiny_cogvideox("1.5"), concepts)
    host.sample(patched, positive, negative, latent, cfg=2.0, steps=2)
    model = tc.tiny_cogvideox("1.5", dtype=torch.bfloat16)
    patched, half = attach(model, concepts)
    assert torch.equal(host.sample(model, positive, negative, latent, cfg=2.0, steps=2),
                       host.sample(patched, positive, negative, latent, cfg=2.0, steps=2))
    maps = half.maps()
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert (maps - recorder.maps()).abs().max() < 0.15


def test_the_blocks_are_the_only_attention_calls(models, concepts):
    """The attention override finds blocks by call order: that holds only while ComfyUI's CogVideoX makes no
    other attention call. Count them, with another pack's override in place (it keeps running, once a call)."""
    from concept_attention import attach
    seen = []

    def foreign_override(func, *args, **kwargs):
        seen.append(args[0].shape[1])
        return func(*args, **kwargs)

    model = models["5b"].clone()
    model.model_options["transformer_options"]["optimized_attention_override"] = foreign_override
    positive, negative = prompts("5b")
    latent = tc.video_latent(batch=1)
    plain = host.sample(model, positive, negative, latent, cfg=2.0, steps=2)
    # 2 steps x 3 blocks, nothing else: cond and uncond in one call (ComfyUI repeats the 6- and 4-token prompts
    # to 12), the prompt then the video
    assert seen == [12 + 3 * 2 * 3] * (2 * 3)
    seen.clear()
    patched, recorder = attach(model, concepts, layers=[1, 2])
    assert torch.equal(host.sample(patched, positive, negative, latent, cfg=2.0, steps=2), plain)
    assert len(seen) == 2 * 3
    unchained, unchained_recorder = attach(models["5b"], concepts, layers=[1, 2])
    host.sample(unchained, positive, negative, latent, cfg=2.0, steps=2)
    torch.testing.assert_close(recorder.maps(), unchained_recorder.maps())


def test_concept_stream_rules(models, concepts):
    """Each rule changes the maps, so a pack that broke one would fail: the text's half of the expert adaLN, no
    position (no RoPE: rotated as a video token they differ), 1.5 I2V's ofs embedding in the modulation."""
    from concept_attention import attach
    for variant in ("5b", "1.5-i2v"):
        model = models[variant]
        dm = model.model.diffusion_model
        patched, recorder = attach(model, concepts, layers=[1, 2])
        positive, negative = prompts(variant)
        _, calls = sample_recorded(model, patched, positive, negative, tc.video_latent(batch=1), cfg=2.0)
        maps = recorder.maps()
        torch.testing.assert_close(maps, ref.expected_maps(dm, calls, concepts.embeddings, [1, 2]), rtol=1e-4,
                                   atol=1e-5)
        wrong = [dict(concept_modulation="video"), dict(concept_rope=7)]
        if variant == "1.5-i2v":
            assert calls[0]["ofs"] is not None and calls[0]["ofs"].eq(2.0).all()  # ComfyUI's default
            wrong.append(dict(ofs=False))
        for options in wrong:
            other = ref.expected_maps(dm, calls, concepts.embeddings, [1, 2], **options)
            assert not torch.allclose(maps, other, atol=1e-4), f"maps do not depend on {options}"


def test_concept_modulation_takes_nothing_from_the_prompt(models, concepts):
    """Block 0's raw cross-attention scores (video queries x concept keys) depend on the video, the timestep
    and the concepts: the same under any prompt, so nothing of the prompt reaches the concepts' modulation."""
    from concept_attention.from_image import maps_from_latent

    def block0_scores(prompt):
        return maps_from_latent(models["5b"], concepts, tc.video_latent(batch=1), prompt, layers=[0],
                                space="cross_attention", softmax=False).maps

    scores = block0_scores(tc.conditioning(6, 0))
    torch.testing.assert_close(block0_scores(tc.conditioning(9, 5)), scores, rtol=1e-5, atol=1e-5)
    assert scores.std(dim=(2, 3, 4)).min() > 1e-2


def test_temporal_patches_map_every_latent_frame(models, concepts):
    """CogVideoX 1.5 patches latent frames in pairs: both frames of a pair share its token frame's map; an odd
    count's last frame (ComfyUI pads the pair circularly) has its own, and its decoded frames are the latent's."""
    from concept_attention import attach
    model, decoded = models["1.5"], tc.video_vae().upscale_ratio[0]
    patched, recorder = attach(model, concepts, layers=[2])
    positive, negative = prompts("1.5")
    for frames in (4, 5):
        out = host.sample(patched, positive, negative, tc.video_latent(batch=1, frames=frames), cfg=2.0, steps=2)
        maps = recorder.maps_for(out)
        assert maps.shape == (1, 3, frames, 2, 3)
        assert torch.equal(maps[:, :, 0], maps[:, :, 1]) and torch.equal(maps[:, :, 2], maps[:, :, 3])
        assert not torch.allclose(maps[:, :, 1], maps[:, :, 2], atol=1e-3)
        masks = recorder.concept_maps_for(out).at_image_size()
        assert masks.shape == (1, 3, decoded(frames), 32, 48)


def test_frame_layout_is_the_vaes(models):
    """The frame expansion follows ComfyUI's own CogVideoX VAE (comfy.sd.VAE, built from the state dict keys it
    detects it by; weights never run): its temporal compression, its decoded frame count per latent frame
    count, and which latent frame each frame joins when encoding."""
    from concept_attention.adapters import adapter_for
    vae = tc.video_vae()
    assert type(vae.first_stage_model).__name__ == "AutoencoderKLCogVideoX"
    for variant in ("5b", "1.5"):
        layout = adapter_for(models[variant]).frame_layout()
        assert layout.compression == vae.temporal_compression_decode()
        assert_frames_follow_the_vae(layout, vae)


def test_from_image_maps_a_video_in_one_partial_pass(models, concepts):
    from concept_attention.from_image import maps_from_latent
    model = models["5b"]
    dm = model.model.diffusion_model
    seen = [0] * 3
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, seen[i] + 1))
               for i, b in enumerate(dm.blocks)]
    inputs = ref.BlockInputs(dm)
    try:
        result = maps_from_latent(model, concepts, tc.video_latent(batch=1), tc.conditioning(6, 0),
                                  noise_level=0.5, samples=2, seed=3, layers=[1])
    finally:
        inputs.remove()
        for h in handles:
            h.remove()
    assert seen == [2, 2, 0]  # two samples, each stopped after block 1
    per_sample = [ref.expected_maps(dm, [call], concepts.embeddings, [1]) for call in inputs.calls]
    torch.testing.assert_close(result.maps, sum(per_sample) / 2, rtol=1e-4, atol=1e-5)
    assert result.maps.shape == (1, 3, 3, 2, 3) and result.image_size == (32, 48)
    assert result.at_image_size().shape == (1, 3, tc.video_vae().upscale_ratio[0](3), 32, 48)


def test_nodes_give_per_frame_masks_through_the_t5_encoder(models):
    """The pack's nodes on a CogVideoX run, concepts and prompt through the tiny CogVideoX T5 (226 tokens)."""
    from tiny_encoders import tiny_cogvideox_clip
    n = host.load_pack().nodes
    model, clip = models["1.5"], tiny_cogvideox_clip()
    decoded = tc.video_vae().upscale_ratio[0]  # the VAE's decoded frames per latent frame count
    frames = decoded(3)
    patched, handle = n.ConceptAttentionPatch.execute(model, clip, "dog, ball, grass", blocks="1-2").result
    positive, negative = (host.conditioning(clip, text) for text in ("a dog with a ball", ""))
    assert positive[0][0].shape[1] == 226
    out = host.sample(patched, positive, negative, tc.video_latent(frames=3), cfg=2.0, steps=2)
    masks, heat, seg, concept_maps = n.ConceptAttentionMasks.execute(handle, {"samples": out}).result
    assert masks.shape == (2 * 3 * frames, 32, 48)  # per video: each concept's frames in a row
    assert heat.shape[0] == 2 * 3 * frames and seg.shape[0] == 2 * frames
    per_frame = masks.reshape(2, 3, frames, 32, 48)
    torch.testing.assert_close(per_frame.sum(1), torch.ones(2, frames, 32, 48))
    # latent frames 0 and 1 share a token frame (1.5's temporal patch): the decoded frames of both alike (up to
    # the upsampling's float rounding), the next one (latent frame 2's) not
    pair = decoded(2)
    torch.testing.assert_close(per_frame[:, :, 0], per_frame[:, :, pair - 1], rtol=0, atol=1e-6)
    assert not torch.allclose(per_frame[:, :, pair - 1], per_frame[:, :, pair], atol=1e-4)


def test_from_image_node_maps_a_video_latent(models):
    """The From Image node on a sampler's video LATENT: masks per decoded frame, clear errors (video_checks.py)."""
    from tiny_encoders import tiny_cogvideox_clip
    check_from_image_node_on_a_video_latent(models["1.5"], tiny_cogvideox_clip(), tc, channels=16)


def test_defaults_and_unsupported_models():
    from concept_attention import Concepts, attach
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.cogvideox import CogVideoXAdapter

    # the authors' blocks 0-29: every block of the 2B (30), the first 30 of the 5B's and 1.5's 42
    assert adapter_for(tc.tiny_cogvideox("5b", num_layers=42)).default_blocks() == list(range(30))
    assert adapter_for(tc.tiny_cogvideox("2b", num_layers=30)).default_blocks() == list(range(30))
    assert adapter_for(tc.tiny_cogvideox("1.5")).default_blocks() == [0, 1, 2]
    assert CogVideoXAdapter.defaults_published and "0-29" in CogVideoXAdapter.default_blocks_text
    with pytest.raises(ConceptAttentionError, match=r"does not support this model: Stable Diffusion 1.5 .*"
                                                    r"supported: .*CogVideoX \(CogVideoX 1.0"):
        attach(host.tiny_sd15(), Concepts(["a"], torch.zeros(1, 32)))
