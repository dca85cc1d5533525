"""attach() on a tiny Lens built through ComfyUI's classes, driven through ComfyUI's samplers, against the
masked-forward re-derivation (reference_lens)."""

import pytest
import torch

import host
import reference_lens as ref
from tiny_lens import TEXT_WIDTH, latent, prompt, tiny_lens

pytestmark = pytest.mark.host

TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def lens():
    return tiny_lens(seed=0)


@pytest.fixture(scope="module")
def lens_concepts():
    from concept_attention import Concepts
    return Concepts(["cat", "sofa", "window"], torch.randn(3, TEXT_WIDTH, generator=torch.Generator().manual_seed(5)))


def run(model, patched, x, *, cfg=1.0, steps=3, pos=None):
    rec = ref.LensBlockInputs(model.model.diffusion_model)
    try:
        out = host.sample(patched, pos or prompt(), prompt(seed=1), x, cfg=cfg, steps=steps)
    finally:
        rec.remove()
    return out, rec.calls


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_maps_equal_the_masked_forward(lens, lens_concepts, cfg):
    from concept_attention import attach
    patched, recorder = attach(lens, lens_concepts, layers=[1, 3])
    _, calls = run(lens, patched, latent(), cfg=cfg)
    maps = recorder.maps()
    assert maps.shape == (2, 3, 6, 8)
    torch.testing.assert_close(maps, ref.expected_maps(calls, lens.model.diffusion_model,
                                                       lens_concepts.embeddings, [1, 3]), **TOL)
    assert maps.std(dim=(2, 3)).min() > 1e-3, "the maps vary across tokens"
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows stay separate"


def test_image_is_bit_identical(lens, lens_concepts):
    from concept_attention import attach
    patched, _ = attach(lens, lens_concepts, layers=[1, 3])
    pos, neg = prompt(padded=2), prompt(seed=1)
    for cfg in (1.0, 4.0):
        assert torch.equal(host.sample(lens, pos, neg, latent(), cfg=cfg),
                           host.sample(patched, pos, neg, latent(), cfg=cfg))


def test_concepts_sit_at_the_first_text_position(lens, lens_concepts):
    from concept_attention import attach
    dm = lens.model.diffusion_model
    patched, recorder = attach(lens, lens_concepts, layers=[1, 3])
    _, calls = run(lens, patched, latent(h=6, w=8))
    start = ref.first_text_position(calls[0]["x_shape"])
    assert start == 4
    probe = torch.randn(1, 1, 1, 32, generator=torch.Generator().manual_seed(0))
    first_text_pe = calls[0]["blocks"][0]["pe"][:1, :, 6 * 8:6 * 8 + 1]  # the first token after the image
    torch.testing.assert_close(ref.explicit_rope(probe, start, dm.pos_embed.axes_dim),
                               ref.rotate(probe, first_text_pe), rtol=1e-5, atol=1e-6)
    maps = recorder.maps()
    torch.testing.assert_close(maps, ref.expected_maps(calls, dm, lens_concepts.embeddings, [1, 3]), **TOL)
    for elsewhere in (0, start + 1):
        moved = ref.expected_maps(calls, dm, lens_concepts.embeddings, [1, 3], concept_position=elsewhere)
        assert not torch.allclose(maps, moved, atol=1e-4), f"position {elsewhere} must give other maps"


def test_prompt_padding_is_never_seen_by_the_concepts(lens, lens_concepts):
    from concept_attention import attach
    patched, recorder = attach(lens, lens_concepts, layers=[1, 3])
    pos = prompt(tokens=8, padded=3)
    other = [[pos[0][0].clone(), dict(pos[0][1])]]
    other[0][0][:, -3:] = torch.randn(1, 3, TEXT_WIDTH, generator=torch.Generator().manual_seed(11))
    image, calls = run(lens, patched, latent(), cfg=2.0, pos=pos)
    maps = recorder.maps()
    torch.testing.assert_close(maps, ref.expected_maps(calls, lens.model.diffusion_model,
                                                       lens_concepts.embeddings, [1, 3]), **TOL)
    assert torch.equal(host.sample(patched, other, prompt(seed=1), latent(), cfg=2.0), image)
    torch.testing.assert_close(recorder.maps(), maps, rtol=0, atol=1e-6)


def test_from_image_stops_after_the_last_needed_block(lens, lens_concepts):
    from concept_attention.from_image import maps_from_latent
    dm = lens.model.diffusion_model
    calls = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
               for i, b in enumerate(dm.transformer_blocks)]
    try:
        result = maps_from_latent(lens, lens_concepts, latent(batch=1), prompt(), layers=[2])
    finally:
        for h in handles:
            h.remove()
    assert calls == [0, 1, 2]
    assert result.maps.shape == (1, 3, 6, 8)
    assert result.image_size == (6 * 16, 8 * 16) and result.pixels_per_token == 16


def test_default_blocks(lens):
    from concept_attention.adapters import adapter_for
    adapter = adapter_for(tiny_lens(num_layers=48))
    assert adapter.family == "Lens" and adapter.default_blocks() == list(range(36, 48))
    assert adapter_for(lens).text_width == TEXT_WIDTH
