"""attach() on a tiny Flux.1 built through ComfyUI's classes, driven through ComfyUI's samplers."""

import pytest
import torch

import host
import reference

pytestmark = pytest.mark.host


def noise_latent(batch=2, h=8, w=10, seed=3):
    return torch.randn(batch, 16, h, w, generator=torch.Generator().manual_seed(seed))


def run_with_reference(model, recorder_model, clip, latent, *, cfg, negative="", steps=3, **extra):
    """Sample `recorder_model` while recording every joint block's inputs of the real forward passes."""
    dm = model.model.diffusion_model
    rec = reference.BlockInputs(dm, dm.double_blocks, "flux")
    try:
        out = host.sample(recorder_model, host.conditioning(clip, "a cat on a sofa", **extra),
                          host.conditioning(clip, negative, **extra), latent, cfg=cfg, steps=steps)
    finally:
        rec.remove()
    return out, rec.calls


@pytest.mark.parametrize("cfg,negative", [(1.0, ""), (3.0, ""), (3.0, "a blurry photo of a dog")])
def test_maps_equal_the_equations(flux, clip, concepts, cfg, negative):
    from concept_attention import attach
    patched, recorder = attach(flux, concepts, layers=[1, 2])
    _, calls = run_with_reference(flux, patched, clip, noise_latent(), cfg=cfg, negative=negative)
    expected = reference.expected_maps(
        calls, lambda call: reference.flux_reference(flux.model.diffusion_model, call, concepts.embeddings, [1, 2]),
        [1, 2])
    maps = recorder.maps()
    assert maps.shape == (2, 3, 4, 5)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)
    reference.assert_maps_are_discriminating(maps, expected)
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows must stay separate"


def test_block_and_step_selection(flux, clip, concepts):
    from concept_attention import attach
    patched, recorder = attach(flux, concepts, layers=[0, 2], steps=[0, 2])
    _, calls = run_with_reference(flux, patched, clip, noise_latent(), cfg=2.0, steps=4)
    dm = flux.model.diffusion_model
    expected = reference.expected_maps(
        calls, lambda call: reference.flux_reference(dm, call, concepts.embeddings, [0, 2]), [0, 2], steps={0, 2})
    torch.testing.assert_close(recorder.maps(), expected, rtol=1e-4, atol=1e-5)
    everything = reference.expected_maps(
        calls, lambda call: reference.flux_reference(dm, call, concepts.embeddings, [0, 1, 2]), [0, 1, 2])
    assert not torch.allclose(recorder.maps(), everything, atol=1e-4)


def test_concept_stream_uses_a_zero_pooled_vector(flux, clip, concepts):
    from concept_attention import attach
    patched, recorder = attach(flux, concepts, layers=[1, 2])
    _, calls = run_with_reference(flux, patched, clip, noise_latent(), cfg=1.0)
    dm = flux.model.diffusion_model
    with_prompt_pooled = reference.expected_maps(
        calls, lambda call: reference.flux_reference(dm, call, concepts.embeddings, [1, 2], zero_pooled=False), [1, 2])
    assert calls[0]["y"].abs().sum() > 0, "the image stream keeps the prompt's pooled vector"
    assert not torch.allclose(recorder.maps(), with_prompt_pooled, atol=1e-4)


def test_image_is_bit_identical(flux, clip, concepts):
    from concept_attention import attach
    patched, _ = attach(flux, concepts)
    pos, neg = host.conditioning(clip, "a cat on a sofa"), host.conditioning(clip, "")
    for cfg in (1.0, 4.0):
        latent = noise_latent()
        assert torch.equal(host.sample(flux, pos, neg, latent, cfg=cfg), host.sample(patched, pos, neg, latent, cfg=cfg))


def test_kontext_reference_tokens_stay_out_of_the_maps(flux, clip, concepts):
    from concept_attention import attach
    patched, recorder = attach(flux, concepts, layers=[1, 2])
    ref = torch.randn(1, 16, 4, 6, generator=torch.Generator().manual_seed(9))
    latent = noise_latent(batch=1, h=8, w=12)
    extra = {"reference_latents": [ref]}
    pos, neg = host.conditioning(clip, "a cat on a sofa", **extra), host.conditioning(clip, "", **extra)
    assert torch.equal(host.sample(flux, pos, neg, latent, cfg=2.0), host.sample(patched, pos, neg, latent, cfg=2.0))
    _, calls = run_with_reference(flux, patched, clip, latent, cfg=2.0, **extra)
    assert calls[0]["blocks"][0]["img"].shape[1] == 4 * 6 + 2 * 3  # generated + reference tokens
    expected = reference.expected_maps(
        calls, lambda call: reference.flux_reference(flux.model.diffusion_model, call, concepts.embeddings, [1, 2]),
        [1, 2])
    assert recorder.maps().shape == (1, 3, 4, 6)
    torch.testing.assert_close(recorder.maps(), expected, rtol=1e-4, atol=1e-5)


def test_maps_sum_to_one_and_cover_the_grid(flux, clip, concepts):
    from concept_attention import attach
    patched, recorder = attach(flux, concepts)
    latent = noise_latent(batch=1, h=9, w=7)  # odd latent sizes are padded to whole patches
    host.sample(patched, host.conditioning(clip, "x"), host.conditioning(clip, ""), latent)
    maps = recorder.maps()
    assert maps.shape == (1, 3, 5, 4)
    torch.testing.assert_close(maps.sum(1), torch.ones(1, 5, 4))


def test_attach_does_not_mutate_the_model(flux, concepts):
    from concept_attention import attach
    options_before = repr(flux.model_options)
    wrappers_before = repr(flux.wrappers)
    patched, _ = attach(flux, concepts)
    assert patched is not flux
    assert repr(flux.model_options) == options_before and repr(flux.wrappers) == wrappers_before


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2s_ancestral"])
def test_multi_call_samplers_count_each_step_once(flux, clip, concepts, sampler):
    """heun evaluates twice per step (its second call lands on the next step's sigma); dpmpp_2s_ancestral
    evaluates at a sigma between steps. Each schedule step counts once; off-schedule calls do not count."""
    from concept_attention import attach
    patched, recorder = attach(flux, concepts, layers=[2])
    dm = flux.model.diffusion_model
    rec = reference.BlockInputs(dm, dm.double_blocks, "flux")
    try:
        out = host.sample(patched, host.conditioning(clip, "a cat"), host.conditioning(clip, ""),
                          noise_latent(batch=1), sampler=sampler, steps=3)
    finally:
        rec.remove()
    assert len(rec.calls) > 3
    expected = reference.expected_maps(
        rec.calls, lambda call: reference.flux_reference(dm, call, concepts.embeddings, [2]), [2])
    torch.testing.assert_close(recorder.maps_for(out), expected, rtol=1e-4, atol=1e-5)


def test_half_precision_and_quantized_weights(clip, concepts):
    """The concept stream calls the block's own modules, so ComfyUI's casting ops handle weight storage."""
    import comfy.model_patcher
    import comfy.supported_models
    from concept_attention import attach

    fp32 = host.tiny_flux(seed=0)
    baseline, base_recorder = attach(fp32, concepts)
    latent = noise_latent(batch=1)
    pos, neg = host.conditioning(clip, "a cat on a sofa"), host.conditioning(clip, "")
    host.sample(baseline, pos, neg, latent)

    fp8_config = comfy.supported_models.Flux(dict(host.FLUX_CONFIG))
    fp8_config.set_inference_dtype(torch.float8_e4m3fn, torch.float32)  # fp8 storage, fp32 compute
    fp8 = fp8_config.get_model({})
    host.init_weights(fp8.diffusion_model, 0)
    fp8 = comfy.model_patcher.ModelPatcher(fp8, torch.device("cpu"), torch.device("cpu"))
    for model in (host.tiny_flux(seed=0, dtype=torch.bfloat16), host.tiny_flux(seed=0, dtype=torch.float16), fp8):
        patched, recorder = attach(model, concepts)
        assert torch.equal(host.sample(model, pos, neg, latent), host.sample(patched, pos, neg, latent))
        maps = recorder.maps()
        assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
        torch.testing.assert_close(maps.sum(1), torch.ones_like(maps.sum(1)))
        # same weights up to rounding: the maps stay close to the fp32 ones
        assert (maps - base_recorder.maps()).abs().max() < 0.15


def test_unsupported_model_and_bad_blocks_are_clear_errors(flux, concepts):
    import comfy.supported_models
    from comfy.model_patcher import ModelPatcher
    from concept_attention import attach
    from concept_attention.errors import ConceptAttentionError

    unet = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
                adm_in_channels=None, in_channels=4, model_channels=32, num_res_blocks=[1, 1],
                transformer_depth=[1, 1], channel_mult=[1, 2], transformer_depth_middle=1,
                use_linear_in_transformer=False, context_dim=32, num_head_channels=16,
                transformer_depth_output=[1, 1, 1, 1], use_temporal_attention=False, use_temporal_resblock=False)
    sdxl = ModelPatcher(comfy.supported_models.SDXL(unet).get_model({}), torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ConceptAttentionError,
                       match=r"does not support this model: SDXL \(a UNet with cross-attention.*supported: Flux.1"):
        attach(sdxl, concepts)
    with pytest.raises(ConceptAttentionError, match=r"Block index 3 is out of range.*valid indices are 0-2"):
        attach(flux, concepts, layers=[1, 3])
    with pytest.raises(ConceptAttentionError, match="width 32"):
        from concept_attention import Concepts
        attach(flux, Concepts(["a"], torch.zeros(1, 7)))


def test_combined_positive_prompts_each_count(flux, clip, concepts):
    """ConditioningCombine gives two positive chunks in one batched call (plus the negative one)."""
    from concept_attention import attach
    patched, recorder = attach(flux, concepts, layers=[1, 2])
    dm = flux.model.diffusion_model
    rec = reference.BlockInputs(dm, dm.double_blocks, "flux")
    positive = host.conditioning(clip, "a cat on a sofa") + host.conditioning(clip, "a window")
    try:
        out = host.sample(patched, positive, host.conditioning(clip, ""), noise_latent(), cfg=2.0)
    finally:
        rec.remove()
    assert sorted(rec.calls[0]["cond_or_uncond"]) == [0, 0, 1]
    expected = reference.expected_maps(
        rec.calls, lambda call: reference.flux_reference(dm, call, concepts.embeddings, [1, 2]), [1, 2])
    torch.testing.assert_close(recorder.maps_for(out), expected, rtol=1e-4, atol=1e-5)


def test_chains_to_other_packs_block_replace_and_attention_override(flux, clip, concepts):
    """Another pack's block replace and attention override keep running under ours, and ours still works."""
    from concept_attention import attach
    calls = {"replace": 0, "override": 0}

    def foreign_replace(args, extra):
        calls["replace"] += 1
        out = extra["original_block"](args)
        return {"img": out["img"] * 1.0, "txt": out["txt"]}

    def foreign_override(func, *args, **kwargs):
        calls["override"] += 1
        return func(*args, **kwargs)

    other = flux.clone()
    other.set_model_patch_replace(foreign_replace, "dit", "double_block", 1)
    other.model_options["transformer_options"]["optimized_attention_override"] = foreign_override
    patched, recorder = attach(other, concepts, layers=[1, 2])
    pos, neg = host.conditioning(clip, "a cat on a sofa"), host.conditioning(clip, "")
    latent = noise_latent(batch=1)
    expected_image = host.sample(other, pos, neg, latent, cfg=2.0)
    before = dict(calls)
    assert torch.equal(host.sample(patched, pos, neg, latent, cfg=2.0), expected_image)
    assert calls["replace"] - before["replace"] == before["replace"]  # once per model call, as without us
    assert calls["override"] - before["override"] == before["override"]
    plain, plain_recorder = attach(flux, concepts, layers=[1, 2])
    host.sample(plain, pos, neg, latent, cfg=2.0)
    torch.testing.assert_close(recorder.maps(), plain_recorder.maps())


def test_two_concept_attention_nodes_in_a_row(flux, clip, concepts):
    from concept_attention import attach, encode_concepts
    first, rec_1 = attach(flux, concepts, layers=[2])
    second, rec_2 = attach(first, encode_concepts(clip, ["dog", "grass"]), layers=[1])
    pos, neg = host.conditioning(clip, "a cat on a sofa"), host.conditioning(clip, "")
    out = host.sample(second, pos, neg, noise_latent(batch=1), cfg=2.0)
    alone_1, alone_rec_1 = attach(flux, concepts, layers=[2])
    alone_2, alone_rec_2 = attach(flux, encode_concepts(clip, ["dog", "grass"]), layers=[1])
    for model in (alone_1, alone_2):
        host.sample(model, pos, neg, noise_latent(batch=1), cfg=2.0)
    torch.testing.assert_close(rec_1.maps_for(out), alone_rec_1.maps())
    torch.testing.assert_close(rec_2.maps_for(out), alone_rec_2.maps())
