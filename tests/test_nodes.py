"""The V3 nodes as ComfyUI sees them: schemas, and execution with tiny models."""

import pytest
import torch

import host
from concept_attention.errors import ConceptAttentionError

pytestmark = pytest.mark.host

NODE_IDS = {"ConceptAttentionPatch", "ConceptAttentionMasks", "ConceptAttentionFromImage",
            "ConceptAttentionSelectMask"}
# What people type into ComfyUI's node search to find a pack like this one (issue 8).
SEARCHES = ("segment", "mask from text", "attention mask", "concept")


@pytest.fixture(scope="module")
def pack():
    return host.load_pack()


class PixelUnshuffleVAE:
    """Stand-in VAE (only `encode` is used): a fixed 8x downsampling to 16 channels."""

    def encode(self, pixels):
        x = pixels.movedim(-1, 1)[:, :, : pixels.shape[1] // 8 * 8, : pixels.shape[2] // 8 * 8]
        x = torch.nn.functional.avg_pool2d(x, 2)  # [B, 3, H/2, W/2]
        x = torch.nn.functional.pixel_unshuffle(x, 4)  # [B, 48, H/8, W/8]
        return x[:, :16]


def test_schemas_are_complete(pack):
    import asyncio
    ext = asyncio.run(pack.comfy_entrypoint())
    nodes = asyncio.run(ext.get_node_list())
    assert {n.define_schema().node_id for n in nodes} == NODE_IDS
    for node in nodes:
        schema = node.define_schema()
        assert "Flux.1" in schema.description and "SD3" in schema.description
        for item in list(schema.inputs) + list(schema.outputs):
            assert item.tooltip, f"{schema.node_id}.{item.id} has no tooltip"
        searchable = [schema.display_name.lower()] + [a.lower() for a in schema.search_aliases]
        for words in SEARCHES:
            assert any(words in text for text in searchable), f"{schema.node_id} is not found by {words!r}"


def test_generation_masks_and_concept_mask(pack, flux, clip):
    n = pack.nodes
    patched, handle = n.ConceptAttentionPatch.execute(flux, clip, "cat, sofa, window", blocks="1-2").result
    cond = host.conditioning(clip, "a cat on a sofa")
    out = host.sample(patched, cond, host.conditioning(clip, ""), torch.zeros(2, 16, 8, 12), cfg=2.0)
    image = torch.rand(2, 64, 96, 3)
    masks, heat, seg, concept_maps = n.ConceptAttentionMasks.execute(handle, {"samples": out}, image).result
    assert masks.shape == (6, 64, 96)
    # previews: the image-sized picture, then a strip with the words (the legend, each heatmap's name)
    assert heat.shape[0] == 6 and heat.shape[1] > 64 and heat.shape[2:] == (96, 3)
    assert seg.shape[0] == 2 and seg.shape[1] > 64 and seg.shape[2:] == (96, 3)
    torch.testing.assert_close(masks.reshape(2, 3, 64, 96).sum(1), torch.ones(2, 64, 96))  # image-major order
    mask = n.ConceptAttentionSelectMask.execute(concept_maps, "Sofa", "argmax").result[0]
    assert mask.shape == (2, 64, 96)
    assert torch.equal(mask, (masks.reshape(2, 3, 64, 96).argmax(1) == 1).float())
    with pytest.raises(ConceptAttentionError, match="'dog' is not in this concept list"):
        n.ConceptAttentionSelectMask.execute(concept_maps, "dog", "soft")
    with pytest.raises(ConceptAttentionError, match="No Concept Attention run produced this LATENT"):
        n.ConceptAttentionMasks.execute(handle, {"samples": torch.zeros(2, 16, 8, 12)})


def test_patch_node_reports_bad_input(pack, flux, clip):
    patch = pack.nodes.ConceptAttentionPatch
    with pytest.raises(ConceptAttentionError, match="No concepts given"):
        patch.execute(flux, clip, " , ")
    with pytest.raises(ConceptAttentionError, match="appears twice"):
        patch.execute(flux, clip, "cat, sofa, cat")
    with pytest.raises(ConceptAttentionError, match="valid indices are 0-2"):
        patch.execute(flux, clip, "cat", blocks="15-18")


def test_queue_time_checks_read_typed_text_and_skip_links(pack):
    """validate_inputs gets None for an input fed by a link (tests/test_server_run.py queues real prompts)."""
    patch, from_image = pack.nodes.ConceptAttentionPatch, pack.nodes.ConceptAttentionFromImage
    assert patch.validate_inputs(concepts="dog,\ngrass", blocks="1-2", steps="all") is True
    assert patch.validate_inputs(concepts=None, blocks=None, steps=None) is True
    assert patch.validate_inputs(concepts="dog", blocks="", steps="5-2").startswith("The steps range '5-2' is rev")
    assert from_image.validate_inputs(concepts="sky, Sky", blocks="").startswith("Concepts 'sky' and 'Sky'")


def test_comfyui_names_the_error_by_its_short_type():
    """ComfyUI's UI shows `<type>: <message>`, the type as execution.full_type_name gives it."""
    import execution

    assert execution.full_type_name(ConceptAttentionError) == "ConceptAttentionError"


class NoEncodeVAE:
    def encode(self, pixels):
        raise AssertionError("a LATENT must be mapped without a VAE encode")


FROM_IMAGE = dict(concepts="cat, dog", caption="a cat", noise_level=0.5, samples=2, seed=3)


def test_from_image_node(pack, flux, clip):
    image = torch.rand(1, 70, 64, 3)  # not a multiple of 16: masks still match the image
    masks, heat, seg, concept_maps = pack.nodes.ConceptAttentionFromImage.execute(
        flux, clip, vae=PixelUnshuffleVAE(), image=image, **FROM_IMAGE).result
    assert masks.shape == (2, 70, 64) and seg.shape[0] == 1 and seg.shape[2:] == (64, 3)
    torch.testing.assert_close(masks.sum(0), torch.ones(70, 64))
    assert concept_maps.names == ("cat", "dog")


def test_from_image_node_maps_a_latent_as_its_image(pack, flux, clip):
    """A LATENT gives the maps of the image it encodes, with no VAE encode; the image is then only drawn over."""
    node = pack.nodes.ConceptAttentionFromImage
    image = torch.rand(2, 70, 64, 3)
    by_image = node.execute(flux, clip, vae=PixelUnshuffleVAE(), image=image, **FROM_IMAGE).result
    latent = {"samples": PixelUnshuffleVAE().encode(image)}  # [2, 16, 8, 8]
    by_latent = node.execute(flux, clip, vae=NoEncodeVAE(), image=image, latent=latent, **FROM_IMAGE).result
    torch.testing.assert_close(by_latent[3].maps, by_image[3].maps, rtol=0, atol=0)
    for a, b in zip(by_latent[:3], by_image[:3]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    masks, _, seg, concept_maps = node.execute(flux, clip, latent=latent, **FROM_IMAGE).result  # no image
    assert masks.shape == (4, 64, 64) and seg.shape[0] == 2 and seg.shape[2:] == (64, 3)
    torch.testing.assert_close(concept_maps.maps, by_image[3].maps, rtol=0, atol=0)


def test_from_image_node_maps_a_sampler_output(pack, flux, clip):
    out = host.sample(flux, host.conditioning(clip, "a cat"), host.conditioning(clip, ""), torch.zeros(1, 16, 8, 6))
    masks, _, _, concept_maps = pack.nodes.ConceptAttentionFromImage.execute(
        flux, clip, latent={"samples": out}, **FROM_IMAGE).result
    assert masks.shape == (2, 64, 48) and concept_maps.image_size == (64, 48)
    torch.testing.assert_close(masks.sum(0), torch.ones(64, 48))


def test_from_image_node_says_what_to_wire(pack, flux, clip):
    node = pack.nodes.ConceptAttentionFromImage
    latent = {"samples": torch.zeros(1, 16, 8, 8)}  # a 64x64 picture
    with pytest.raises(ConceptAttentionError, match="nothing to map: wire 'latent'"):
        node.execute(flux, clip, **FROM_IMAGE)
    with pytest.raises(ConceptAttentionError, match="must be encoded with the model's VAE: wire 'vae'"):
        node.execute(flux, clip, image=torch.rand(1, 64, 64, 3), **FROM_IMAGE)
    with pytest.raises(ConceptAttentionError, match=r"shape \[1, 4, 8, 8\].* 16 channels"):
        node.execute(flux, clip, latent={"samples": torch.zeros(1, 4, 8, 8)}, **FROM_IMAGE)
    for wrong in (torch.rand(1, 128, 128, 3), torch.rand(1, 64, 56, 3), torch.rand(3, 64, 64, 3)):
        with pytest.raises(ConceptAttentionError, match="is not the picture of this LATENT"):
            node.execute(flux, clip, image=wrong, latent=latent, vae=NoEncodeVAE(), **FROM_IMAGE)
    masks = node.execute(flux, clip, image=torch.rand(1, 71, 64, 3), latent=latent, **FROM_IMAGE).result[0]
    assert masks.shape == (2, 71, 64)  # an encoded image keeps the few rows the VAE dropped


def test_every_sampler_node_records_its_run(pack, flux, clip):
    """KSampler, KSamplerAdvanced (started late: schedule indices are relative), SamplerCustom and
    SamplerCustomAdvanced, each followed by the masks node on its own LATENT."""
    import nodes as comfy_nodes
    from comfy_extras import nodes_custom_sampler as custom

    patched, handle = pack.nodes.ConceptAttentionPatch.execute(flux, clip, "cat, sofa", steps="1").result
    pos, neg = host.conditioning(clip, "a cat on a sofa"), host.conditioning(clip, "")
    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    sigmas = custom.BasicScheduler.execute(patched, "simple", 3, 1.0).result[0]
    sampler = custom.KSamplerSelect.execute("euler").result[0]
    outputs = [
        comfy_nodes.KSampler().sample(patched, 1, 3, 2.0, "euler", "simple", pos, neg, latent)[0],
        comfy_nodes.KSamplerAdvanced().sample(patched, "enable", 2, 4, 2.0, "euler", "simple", pos, neg, latent,
                                              1, 10000, "disable")[0],
        custom.SamplerCustom.execute(patched, True, 3, 2.0, pos, neg, sampler, sigmas, latent).result[0],
        custom.SamplerCustomAdvanced.execute(custom.RandomNoise.execute(4).result[0],
                                             custom.BasicGuider.execute(patched, pos).result[0], sampler, sigmas,
                                             latent).result[0],
    ]
    maps = [pack.nodes.ConceptAttentionMasks.execute(handle, out).result[3].maps for out in outputs]
    for i, m in enumerate(maps):
        assert m.shape == (1, 2, 4, 4)
        for other in maps[i + 1:]:
            assert not torch.allclose(m, other)
