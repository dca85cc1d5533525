"""attach() on tiny NextDiT models (Z-Image, Lumina 2 with grouped-query attention, NewBie, Z-Image pixel space)
built through ComfyUI's own classes and sampled through its samplers, against the masked forward of
tests/reference_lumina.py."""

import pytest
import torch

import host
import reference_lumina
import tiny_lumina

pytestmark = pytest.mark.host

LAYER_COUNT = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: a second intra-op thread only waits on a busy machine (it made the module 5x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def z_image():
    return tiny_lumina.tiny_z_image(seed=0)


@pytest.fixture(scope="module")
def z_image_omni():
    return tiny_lumina.tiny_z_image_omni(seed=4)


@pytest.fixture(scope="module")
def lumina2():
    return tiny_lumina.tiny_lumina2(seed=1)


@pytest.fixture(scope="module")
def newbie():
    return tiny_lumina.tiny_newbie(seed=2)


@pytest.fixture(scope="module")
def z_image_pixel():
    return tiny_lumina.tiny_z_image_pixel(seed=3)


@pytest.fixture(scope="module")
def concepts():
    return tiny_lumina.concepts(("cat", "sofa", "window"))


def latent(name, batch=2, seed=3):
    """A noise latent whose token grid is 4x5 (pixel space: 4x4-pixel RGB patches)."""
    shape = (batch, 3, 16, 20) if name == "z_image_pixel" else (batch, 16, 8, 10)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


BATCHED_CFG = ("lumina2", "newbie")  # negative prompt as long as the positive: one batched call for both


def prompts(name, **extra):
    pooled = name == "newbie"
    return (tiny_lumina.conditioning(7, seed=0, pooled=pooled, **extra),
            tiny_lumina.conditioning(7 if name in BATCHED_CFG else 5, seed=1, pooled=pooled, **extra))


def recorded_run(model, patched, name, cfg, steps=3, **extra):
    """Sample `patched` while recording every joint layer's inputs; returns (latent out, recorded calls)."""
    dm = model.model.diffusion_model
    inputs = reference_lumina.LayerInputs(dm)
    try:
        out = host.sample(patched, *prompts(name, **extra), latent(name), cfg=cfg, steps=steps)
    finally:
        inputs.remove()
    return out, inputs.calls


@pytest.fixture(scope="module")
def z_image_run(z_image, concepts):
    """One CFG run of the tiny Z-Image, layers 1 and 3: (maps, recorded calls)."""
    from concept_attention import attach
    patched, recorder = attach(z_image, concepts, layers=[1, 3])
    _, calls = recorded_run(z_image, patched, "z_image", cfg=3.0)
    return recorder.maps(), calls


def expected(model, calls, concepts, layers, **options):
    return reference_lumina.expected_maps(model.model.diffusion_model, calls, concepts.embeddings, layers, **options)


def test_models_are_what_the_tests_claim(z_image, z_image_omni, lumina2, newbie, z_image_pixel):
    from comfy.ldm.lumina.model import NextDiTPixelSpace
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.lumina import NextDiTAdapter

    for model in (z_image, z_image_omni, lumina2, newbie, z_image_pixel):
        adapter = adapter_for(model)
        assert type(adapter) is NextDiTAdapter
        assert adapter.num_blocks == LAYER_COUNT and adapter.default_blocks() == [3]  # the last quarter
    assert type(z_image.model).__name__ == "Lumina2" and z_image.model.diffusion_model.pad_tokens_multiple == 32
    assert z_image_omni.model.diffusion_model.siglip_embedder is not None
    assert lumina2.model.diffusion_model.layers[0].attention.n_rep == 2  # grouped-query attention
    assert newbie.model.diffusion_model.clip_text_pooled_proj is not None
    assert type(z_image_pixel.model.diffusion_model) is NextDiTPixelSpace


@pytest.mark.parametrize("name,cfg,layers", [
    ("z_image", 1.0, [1, 3]), ("z_image", 3.0, None), ("lumina2", 1.0, [0, 2]), ("lumina2", 3.0, [1, 3]),
    ("newbie", 3.0, [1, 3]), ("z_image_pixel", 3.0, [1, 3])])
def test_maps_equal_the_masked_forward(request, concepts, name, cfg, layers):
    from concept_attention import attach
    model = request.getfixturevalue(name)
    patched, recorder = attach(model, concepts, layers=layers)
    _, calls = recorded_run(model, patched, name, cfg)
    rows_per_call = {len(call["cond_or_uncond"]) for call in calls}
    assert rows_per_call == ({2} if cfg > 1 and name in BATCHED_CFG else {1})
    maps = recorder.maps()
    assert maps.shape == (2, 3, 4, 5)
    torch.testing.assert_close(maps, expected(model, calls, concepts, layers or [3]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 4, 5))
    assert maps.std(dim=(2, 3)).min() > 1e-3, "the maps vary across tokens"
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows stay separate"


@pytest.mark.parametrize("name,cfg", [("z_image", 1.0), ("z_image", 4.0), ("lumina2", 4.0), ("newbie", 4.0),
                                      ("z_image_pixel", 4.0)])
def test_image_is_bit_identical(request, concepts, name, cfg):
    from concept_attention import attach
    model = request.getfixturevalue(name)
    patched, _ = attach(model, concepts, layers=[0, 1, 2, 3])
    image = host.sample(model, *prompts(name), latent(name), cfg=cfg)
    assert torch.equal(host.sample(patched, *prompts(name), latent(name), cfg=cfg), image)


def test_bfloat16_model(concepts, z_image_run):
    """A bf16 Z-Image (as ComfyUI runs it on GPUs) with the same weights: finite maps close to the fp32 ones."""
    from concept_attention import attach
    model = tiny_lumina.tiny_z_image(seed=0, dtype=torch.bfloat16)
    patched, recorder = attach(model, concepts, layers=[1, 3])
    host.sample(patched, *prompts("z_image"), latent("z_image"), cfg=3.0)
    maps = recorder.maps()
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
    torch.testing.assert_close(maps.sum(1), torch.ones_like(maps.sum(1)))
    assert (maps - z_image_run[0]).abs().max() < 0.15


def test_padding_rows_are_neither_image_nor_concept(z_image, concepts, z_image_run):
    maps, calls = z_image_run
    # caption 7 -> 32 rows and image 20 -> 32 rows: padding on both sides of the joint sequence
    assert calls[0]["blocks"][0]["x"].shape[1] == 64
    assert maps.shape == (2, 3, 4, 5)  # the 20 real image tokens only
    with_padding_keys = expected(z_image, calls, concepts, [1, 3], padding_keys=True)
    assert not torch.allclose(maps, with_padding_keys, atol=1e-3), "concepts must not see padding rows"


def test_concepts_sit_at_the_first_text_position(z_image, concepts, z_image_run):
    maps, calls = z_image_run
    torch.testing.assert_close(maps, expected(z_image, calls, concepts, [1, 3], position=1.0), rtol=1e-4, atol=1e-5)
    after_the_prompt = 33.0  # where the caption's padded 32 rows end
    for position in (0.0, after_the_prompt):
        elsewhere = expected(z_image, calls, concepts, [1, 3], position=position)
        assert not torch.allclose(maps, elsewhere, atol=1e-3), f"concepts placed at text position {position}"


def test_concepts_use_a_zero_pooled_vector(newbie, concepts):
    from concept_attention import attach
    patched, recorder = attach(newbie, concepts, layers=[1, 3])
    _, calls = recorded_run(newbie, patched, "newbie", cfg=1.0)
    assert calls[0]["pooled"].abs().sum() > 0, "the image and the prompt keep the prompt's pooled text"
    with_prompt_pooled = expected(newbie, calls, concepts, [1, 3], zero_pooled=False)
    assert not torch.allclose(recorder.maps(), with_prompt_pooled, atol=1e-4)
    torch.testing.assert_close(recorder.maps(), expected(newbie, calls, concepts, [1, 3]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,length", [("z_image", 128), ("z_image_omni", 192)])
def test_reference_images_stay_out_of_the_maps(request, concepts, name, length):
    """Omni mode: a reference latent adds its caption padding and image rows (and, with SigLIP inputs, SigLIP
    padding rows for both images) before the generated image."""
    from concept_attention import attach
    model = request.getfixturevalue(name)
    ref = torch.randn(1, 16, 4, 6, generator=torch.Generator().manual_seed(9))
    extra = {"reference_latents": [ref]}
    image = host.sample(model, *prompts(name, **extra), latent(name), cfg=3.0)
    patched, recorder = attach(model, concepts, layers=[1, 3])
    out, calls = recorded_run(model, patched, name, cfg=3.0, **extra)
    assert torch.equal(out, image)
    assert calls[0]["blocks"][0]["x"].shape[1] == length  # 32 rows each: captions, (SigLIP x2), images
    maps = recorder.maps()
    assert maps.shape == (2, 3, 4, 5)
    torch.testing.assert_close(maps, expected(model, calls, concepts, [1, 3]), rtol=1e-4, atol=1e-5)
    with_reference_keys = expected(model, calls, concepts, [1, 3], reference_keys=True)
    assert not torch.allclose(maps, with_reference_keys, atol=1e-3), "concepts must not see the reference image"


def test_from_image_stops_after_the_last_needed_layer(z_image, concepts):
    from concept_attention.from_image import maps_from_latent
    dm = z_image.model.diffusion_model
    calls = []
    stages = {"context_refiner": dm.context_refiner, "noise_refiner": dm.noise_refiner, "layer": dm.layers}
    handles = [module.register_forward_pre_hook(lambda m, a, key=(stage, i): calls.append(key))
               for stage, modules in stages.items() for i, module in enumerate(modules)]
    inputs = reference_lumina.LayerInputs(dm)
    try:
        maps = maps_from_latent(z_image, concepts, latent("z_image", batch=1), prompts("z_image")[0],
                                layers=[1]).maps
    finally:
        inputs.remove()
        for handle in handles:
            handle.remove()
    assert [i for stage, i in calls if stage == "layer"] == [0, 1]
    assert ("noise_refiner", 0) in calls
    torch.testing.assert_close(maps, expected(z_image, inputs.calls, concepts, [1]), rtol=1e-4, atol=1e-5)


def test_another_packs_attention_override_keeps_running(z_image, concepts):
    from concept_attention import attach
    seen = {"calls": 0}

    def foreign_override(func, *args, **kwargs):
        seen["calls"] += 1
        return func(*args, **kwargs)

    other = z_image.clone()
    other.model_options["transformer_options"]["optimized_attention_override"] = foreign_override
    image = host.sample(other, *prompts("z_image"), latent("z_image", batch=1), cfg=2.0)
    without_us = seen["calls"]
    assert without_us > 0
    patched, recorder = attach(other, concepts, layers=[1, 2])
    assert torch.equal(host.sample(patched, *prompts("z_image"), latent("z_image", batch=1), cfg=2.0), image)
    assert seen["calls"] - without_us == without_us, "the other pack's override runs for every attention call"
    plain, plain_recorder = attach(z_image, concepts, layers=[1, 2])
    host.sample(plain, *prompts("z_image"), latent("z_image", batch=1), cfg=2.0)
    torch.testing.assert_close(recorder.maps(), plain_recorder.maps())


def test_unsupported_model_and_bad_input_are_clear_errors(z_image, concepts):
    import comfy.supported_models
    from comfy.model_patcher import ModelPatcher
    from concept_attention import Concepts, attach
    from concept_attention.errors import ConceptAttentionError

    pixart = comfy.supported_models.PixArtSigma(dict(image_model="pixart_sigma", depth=1, hidden_size=32,
                                                     num_heads=2, patch_size=2, in_channels=4,
                                                     caption_channels=32, pe_interpolation=1.0))
    with pytest.raises(ConceptAttentionError,
                       match=r"does not support this model: PixArt-Sigma .*supported: .*Z-Image / Lumina 2 \(Z-Image, "
                             r"Z-Image Turbo, Z-Image pixel space, Lumina 2, NewBie"):
        attach(ModelPatcher(pixart.get_model({}), torch.device("cpu"), torch.device("cpu")), concepts)
    with pytest.raises(ConceptAttentionError, match=r"Block index 4 is out of range.*valid indices are 0-3"):
        attach(z_image, concepts, layers=[1, 4])
    with pytest.raises(ConceptAttentionError, match=r"7 wide but Z-Image / Lumina 2 \(Lumina2\).*width 32"):
        attach(z_image, Concepts(["a"], torch.zeros(1, 7)))


def test_concepts_through_the_z_image_text_encoder(z_image):
    """encode_concepts with ComfyUI's Z-Image text encoder (a tiny Qwen3 behind the real chat template), the
    prompt encoded by it too: the maps equal the masked forward."""
    tiny_encoders = pytest.importorskip("tiny_encoders", reason="tests/tiny_encoders.py comes with branch encoders")
    from concept_attention import attach, encode_concepts
    clip = tiny_encoders.tiny_zimage_clip(seed=0)
    concepts = encode_concepts(clip, ["cat", "sofa", "window"])
    assert concepts.embeddings.shape == (3, tiny_lumina.TEXT_WIDTH)
    patched, recorder = attach(z_image, concepts, layers=[1, 3])
    dm = z_image.model.diffusion_model
    inputs = reference_lumina.LayerInputs(dm)
    try:
        host.sample(patched, host.conditioning(clip, "a cat on a sofa by the window"), host.conditioning(clip, ""),
                    latent("z_image"), cfg=3.0)
    finally:
        inputs.remove()
    maps = recorder.maps()
    torch.testing.assert_close(maps, expected(z_image, inputs.calls, concepts, [1, 3]), rtol=1e-4, atol=1e-5)
    assert maps.std(dim=(2, 3)).min() > 1e-3, "the maps vary across tokens"
