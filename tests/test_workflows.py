"""The example workflows in workflows/ against the real ComfyUI with this pack loaded as ComfyUI loads it.

For every workflow: each node type exists, each link joins an output to an input of a compatible type, each
widget value is valid for its input (model combos checked against a temporary models folder holding the files
the workflows name, numbers within min/max), the model files are named as in ComfyUI's own templates, and the
API prompt converted from the UI workflow passes ComfyUI's own `execution.validate_prompt`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from pathlib import Path

import pytest

import workflow_tools as wt

pytestmark = pytest.mark.host

EXPECTED = {  # the file names are the titles ComfyUI's template browser shows
    "Flux - masks while generating": {"UNETLoader", "DualCLIPLoader", "VAELoader", "ConceptAttentionPatch",
                                      "KSampler", "VAEDecode", "ConceptAttentionMasks", "SaveImage",
                                      "PreviewImage"},
    "Flux - masks of an existing image": {"LoadImage", "ConceptAttentionFromImage", "ConceptAttentionSelectMask",
                                          "MaskPreview"},
    "Flux - inpaint one concept": {"ConceptAttentionPatch", "ConceptAttentionMasks", "ConceptAttentionSelectMask",
                                   "GrowMask", "FeatherMask", "SetLatentNoiseMask", "KSampler"},
    "Flux - composite a concept": {"LoadImage", "ConceptAttentionFromImage", "ConceptAttentionSelectMask",
                                   "ImageCompositeMasked"},
    "SD3.5 - masks while generating": {"CheckpointLoaderSimple", "ConceptAttentionPatch", "ConceptAttentionMasks",
                                       "KSampler"},
    "Flux Kontext - edit one concept": {"UNETLoader", "FluxKontextImageScale", "ReferenceLatent",
                                        "ConceptAttentionFromImage", "ConceptAttentionSelectMask",
                                        "ImageCompositeMasked"},
    "Chroma - masks of an image": {"UNETLoader", "CLIPLoader", "VAELoader", "LoadImage", "ConceptAttentionFromImage",
                                   "ConceptAttentionSelectMask", "MaskPreview"},
    "Qwen-Image-Edit - edit one concept": {"UNETLoader", "CLIPLoader", "VAELoader", "FluxKontextImageScale",
                                           "TextEncodeQwenImageEditPlus", "ReferenceLatent", "ModelSamplingAuraFlow",
                                           "CFGNorm", "KSampler", "ConceptAttentionFromImage",
                                           "ConceptAttentionSelectMask", "ImageCompositeMasked"},
    "Flux.2 Klein - inpaint one concept": {"UNETLoader", "CLIPLoader", "VAELoader", "ConceptAttentionPatch",
                                           "EmptyFlux2LatentImage", "Flux2Scheduler", "CFGGuider",
                                           "SamplerCustomAdvanced", "ConceptAttentionMasks",
                                           "ConceptAttentionSelectMask", "GrowMask", "FeatherMask",
                                           "SetLatentNoiseMask"},
    "Z-Image Turbo - cut out a concept": {"UNETLoader", "CLIPLoader", "VAELoader", "ModelSamplingAuraFlow",
                                          "ConceptAttentionPatch", "KSampler", "ConceptAttentionMasks",
                                          "ConceptAttentionSelectMask", "ImageScale", "ImageCompositeMasked"},
    "Krea 2 - inpaint an existing image": {"UNETLoader", "CLIPLoader", "VAELoader", "LoadImage",
                                           "ImageScaleToTotalPixels", "VAEEncode", "ConceptAttentionFromImage",
                                           "ConceptAttentionSelectMask", "GrowMask", "FeatherMask",
                                           "SetLatentNoiseMask", "KSampler"},
    "HunyuanVideo 1.5 - video cut-out": {"UNETLoader", "DualCLIPLoader", "VAELoader", "ModelSamplingSD3",
                                         "ConceptAttentionPatch", "EmptyHunyuanVideo15Latent", "BasicScheduler",
                                         "SamplerCustomAdvanced", "ConceptAttentionMasks",
                                         "ConceptAttentionSelectMask", "InvertMask", "ImageCompositeMasked",
                                         "CreateVideo", "SaveVideo"},
    "Wan 2.2 - per-frame masks": {"UNETLoader", "CLIPLoader", "VAELoader", "ModelSamplingSD3", "ConceptAttentionPatch",
                                  "Wan22ImageToVideoLatent", "KSampler", "ConceptAttentionMasks",
                                  "ConceptAttentionSelectMask", "InvertMask", "ImageCompositeMasked", "CreateVideo",
                                  "SaveVideo"},
}
FILES = wt.workflow_files()
IDS = [p.stem for p in FILES]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """ComfyUI's node registry with the pack, and folder_paths pointing at temporary models/input folders
    that hold (empty) files of the names the workflows use."""
    nodes = wt.load_comfy_nodes()
    with wt.comfy_folders(tmp_path_factory.mktemp("comfy-folders")):
        yield nodes


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_workflow_set():
    assert set(IDS) == set(EXPECTED), "workflows/ should hold exactly the documented example workflows"
    for title in IDS:  # ComfyUI 0.25's template browser shows the file name as the title and the description
        assert " " in title and "_" not in title, f"{title!r} is not a title a person reads"
        assert len(title) <= 34, f"{title!r} does not fit the template card's title line"
        assert not set(title) & set('<>:"/\\|?*'), f"{title!r} is not a file name on every system"
    for path in FILES:
        thumb = path.with_suffix(".png")
        assert thumb.is_file(), f"{path.name} has no thumbnail {thumb.name}"
        # ComfyUI's template browser asks for <name>.jpg next to a custom node's example workflow.
        assert path.with_suffix(".jpg").is_file(), f"{path.name} has no {path.stem}.jpg for the template browser"


def test_pack_registered_the_comfyui_way(comfy):
    for node_id in wt.PACK_NODE_IDS:
        cls = comfy.NODE_CLASS_MAPPINGS.get(node_id)
        assert cls is not None, f"{node_id} not registered by nodes.init_external_custom_nodes"
        assert cls.RELATIVE_PYTHON_MODULE == f"custom_nodes.{wt.PACK_DIR_NAME}"
    assert comfy.NODE_DISPLAY_NAME_MAPPINGS["ConceptAttentionPatch"] == "Concept Attention"
    assert comfy.NODE_DISPLAY_NAME_MAPPINGS["ConceptAttentionSelectMask"] == "Concept Mask"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_format_and_node_types(comfy, path):
    wf = load(path)
    assert wf.get("version") == 0.4 and isinstance(wf["nodes"], list) and isinstance(wf["links"], list)
    ids = [n["id"] for n in wf["nodes"]]
    assert len(ids) == len(set(ids)), "duplicate node ids"
    assert wf["last_node_id"] >= max(ids) and wf["last_link_id"] >= max((l[0] for l in wf["links"]), default=0)
    types = {n["type"] for n in wf["nodes"]}
    unknown = {t for t in types if t not in comfy.NODE_CLASS_MAPPINGS and t not in wt.VIRTUAL_NODES}
    assert not unknown, f"unknown node types: {unknown}"
    assert EXPECTED[path.stem] <= types, f"missing {EXPECTED[path.stem] - types}"
    for node in wf["nodes"]:
        if node["type"] in wt.PACK_NODE_IDS:
            assert node["properties"].get("cnr_id") == "comfyui-concept-attention"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_links_join_compatible_types(comfy, path):
    wf = load(path)
    assert wt.check_links(wf, comfy.NODE_CLASS_MAPPINGS) == []
    # Every required socket input is connected.
    for node in wf["nodes"]:
        if node["type"] in wt.VIRTUAL_NODES:
            continue
        linked = {i["name"] for i in node["inputs"] if i.get("link") is not None}
        for name, _, category in wt.socket_inputs(comfy.NODE_CLASS_MAPPINGS[node["type"]]):
            if category == "required":
                assert name in linked, f"{node['type']} #{node['id']}: required input {name!r} not connected"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_layout_is_tidy(path):
    assert wt.check_layout(load(path)) == []


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_widget_values_are_valid(comfy, path):
    assert wt.check_widgets(load(path), comfy.NODE_CLASS_MAPPINGS) == []


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_concept_masks_name_listed_concepts(comfy, path):
    """Each Concept Mask asks for a concept that its upstream Concept Attention node lists."""
    wf = load(path)
    mappings = comfy.NODE_CLASS_MAPPINGS
    by_id = {n["id"]: n for n in wf["nodes"]}
    links = wt.link_table(wf)

    def source(node, input_name):
        link = next(i["link"] for i in node["inputs"] if i["name"] == input_name)
        return by_id[links[link][1]]

    for node in wf["nodes"]:
        if node["type"] != "ConceptAttentionSelectMask":
            continue
        maps = source(node, "concept_maps")
        origin = source(maps, "concept_attention") if maps["type"] == "ConceptAttentionMasks" else maps
        concepts = wt.widget_values(origin, mappings[origin["type"]])["concepts"]
        listed = [c.strip().lower() for c in re.split(r"[,\n]", concepts) if c.strip()]
        wanted = wt.widget_values(node, mappings[node["type"]])["concept"].strip().lower()
        assert wanted in listed, f"Concept Mask #{node['id']} wants {wanted!r}, the list is {listed}"


# Model files of families that the installed templates (comfyui-workflow-templates 0.10) have no local template
# for yet, named as Comfy-Org's own repackaged repository for ComfyUI names them (file -> that repository).
COMFY_ORG_FILES = {
    "krea2_turbo_fp8_scaled.safetensors": "Comfy-Org/Krea-2",
    "qwen3vl_4b_fp8_scaled.safetensors": "Comfy-Org/Krea-2",
}


def official_model_names() -> set[str]:
    """Every model file name in ComfyUI's official workflow templates (pip: comfyui-workflow-templates*)."""
    import importlib.util

    names = set()
    for package in ("comfyui_workflow_templates_media_image", "comfyui_workflow_templates_media_video",
                    "comfyui_workflow_templates_core"):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            for template in Path(folder).rglob("*.json"):
                names |= set(re.findall(r"[\w.\-]+\.safetensors", template.read_text(encoding="utf-8",
                                                                                   errors="ignore")))
    return names


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_model_files_named_as_comfyui_templates(comfy, path):
    wf = load(path)
    official = official_model_names()
    if not official:
        pytest.skip("ComfyUI's workflow templates (pip comfyui-workflow-templates) are not installed")
    for node in wf["nodes"]:
        folders = wt.LOADER_FOLDERS.get(node["type"])
        if not folders:
            continue
        values = wt.widget_values(node, comfy.NODE_CLASS_MAPPINGS[node["type"]])
        listed = {m["name"]: m for m in node["properties"].get("models", [])}
        for widget, folder in folders.items():
            name = values[widget]
            assert name in official or name in COMFY_ORG_FILES, (
                f"{name} is not a model file name used by ComfyUI's own templates")
            assert name in wt.MODEL_FILES[folder]
            # properties.models drives the frontend's 'missing models' dialog with download links.
            assert name in listed and listed[name]["directory"] == folder
            assert listed[name]["url"].startswith("https://huggingface.co/") and name in listed[name]["url"]
            if name not in official:
                assert listed[name]["url"].startswith(f"https://huggingface.co/{COMFY_ORG_FILES[name]}/")


def validate(prompt: dict):
    import execution

    return asyncio.run(execution.validate_prompt("ca-workflow-test", prompt, None))


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_api_prompt_passes_comfyui_validation(comfy, path):
    wf = load(path)
    prompt = wt.ui_to_api(wf, comfy.NODE_CLASS_MAPPINGS)
    valid, error, good_outputs, node_errors = validate(prompt)
    assert valid, f"{error}\n{json.dumps(node_errors, indent=1)[:3000]}"
    assert node_errors == {}
    outputs = {k for k, v in prompt.items() if getattr(comfy.NODE_CLASS_MAPPINGS[v["class_type"]],
                                                       "OUTPUT_NODE", False)}
    assert set(good_outputs) == outputs, "every output node should validate"


def test_checks_catch_broken_workflows(comfy):
    """The checks above are not vacuous: a wrong model name, an out-of-range number and a wrongly typed link
    are all reported, and ComfyUI's validation rejects them too."""
    wf = load(wt.WORKFLOWS / "Flux - masks while generating.json")
    by_type = {n["type"]: n for n in wf["nodes"]}
    mappings = comfy.NODE_CLASS_MAPPINGS

    bad = copy.deepcopy(wf)
    unet = next(n for n in bad["nodes"] if n["type"] == "UNETLoader")
    unet["widgets_values"][0] = "flux1-dev.sft"
    assert any("flux1-dev.sft" in p for p in wt.check_widgets(bad, mappings))
    assert str(unet["id"]) in validate(wt.ui_to_api(bad, mappings))[3]

    bad = copy.deepcopy(wf)
    ks = next(n for n in bad["nodes"] if n["type"] == "KSampler")
    ks["widgets_values"][2] = 0  # steps, min 1
    assert any("steps" in p for p in wt.check_widgets(bad, mappings))
    assert str(ks["id"]) in validate(wt.ui_to_api(bad, mappings))[3]

    bad = copy.deepcopy(wf)
    masks_id, decode_id = by_type["ConceptAttentionMasks"]["id"], by_type["VAEDecode"]["id"]
    link = next(l for l in bad["links"] if l[3] == masks_id and l[1] == by_type["KSampler"]["id"])
    link[1], link[5] = decode_id, "IMAGE"  # IMAGE into the LATENT input
    assert any("incompatible" in p for p in wt.check_links(bad, mappings))
    assert str(masks_id) in validate(wt.ui_to_api(bad, mappings))[3]  # node_errors
