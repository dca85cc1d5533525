"""A real ComfyUI server with the pack installed the way a user's `git clone` install gets it.

The pack is `git clone`d (HEAD of this repo: only committed files) into a fresh base directory's
custom_nodes/comfyui-concept-attention, then `main.py --cpu` starts on a free 127.0.0.1 port. Asserts:
the log shows the pack imported (no import failure, no pyproject parse warning), `/object_info` lists all
four nodes with their inputs (names, order, types), outputs and search aliases, and ComfyUI serves the pack's example
workflows (with thumbnails) through `/api/workflow_templates`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from urllib.parse import quote

import pytest

import comfy_server
import workflow_tools as wt

pytestmark = [pytest.mark.host, pytest.mark.slow]

# Inputs in order (name, type, category). Saved UI workflows store widget values by position, so new inputs
# may only be appended: each node's actual inputs must start with this list (and the widgets among them keep
# their order).
INPUTS = {
    "ConceptAttentionPatch": [("model", "MODEL", "required"), ("clip", "CLIP", "required"),
                              ("concepts", "STRING", "required"), ("blocks", "STRING", "required"),
                              ("steps", "STRING", "required"), ("token_mode", "COMBO", "required"),
                              ("space", "COMBO", "required")],
    "ConceptAttentionMasks": [("concept_attention", "CONCEPT_ATTENTION", "required"),
                              ("latent", "LATENT", "required"), ("image", "IMAGE", "optional")],
    # vae and image became optional (a LATENT can be mapped instead): they moved behind the required inputs,
    # which keeps every widget's position; latent was appended.
    "ConceptAttentionFromImage": [("model", "MODEL", "required"), ("clip", "CLIP", "required"),
                                  ("concepts", "STRING", "required"), ("caption", "STRING", "required"),
                                  ("noise_level", "FLOAT", "required"), ("samples", "INT", "required"),
                                  ("seed", "INT", "required"), ("blocks", "STRING", "required"),
                                  ("token_mode", "COMBO", "required"), ("space", "COMBO", "required"),
                                  ("vae", "VAE", "optional"), ("image", "IMAGE", "optional"),
                                  ("latent", "LATENT", "optional")],
    "ConceptAttentionSelectMask": [("concept_maps", "CONCEPT_ATTENTION_MAPS", "required"),
                                   ("concept", "STRING", "required"), ("mode", "COMBO", "required"),
                                   ("threshold", "FLOAT", "required")],
}
MAP_OUTPUTS = ["MASK", "IMAGE", "IMAGE", "CONCEPT_ATTENTION_MAPS"]
OUTPUTS = {"ConceptAttentionPatch": ["MODEL", "CONCEPT_ATTENTION"], "ConceptAttentionMasks": MAP_OUTPUTS,
           "ConceptAttentionFromImage": MAP_OUTPUTS, "ConceptAttentionSelectMask": ["MASK"]}
SEARCHES = ("segment", "mask from text", "attention mask", "concept")  # what people type into node search
DISPLAY = {"ConceptAttentionPatch": "Concept Attention", "ConceptAttentionMasks": "Concept Attention Masks",
           "ConceptAttentionFromImage": "Concept Attention from Image",
           "ConceptAttentionSelectMask": "Concept Mask"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if shutil.which("git") is None or not (wt.REPO / ".git").exists():
        pytest.skip("needs git and this repo's .git to test the git-clone install")
    base = tmp_path_factory.mktemp("comfy-base")
    try:
        pack = comfy_server.prepare_base_dir(base, pack_source="clone")
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"git clone of {wt.REPO} failed: {exc.stdout!r}")
    with comfy_server.running_comfyui(base) as (url, log_path):
        yield url, log_path, pack


def actual_inputs(info: dict) -> list[tuple[str, str, str]]:
    result = []
    for category in ("required", "optional"):
        section = info["input"].get(category, {})
        for name in info["input_order"].get(category, list(section)):
            typ = section[name][0]
            result.append((name, "COMBO" if isinstance(typ, list) else typ, category))
    return result


def test_pack_imports_cleanly(server):
    url, log_path, pack = server
    log = log_path.read_text(encoding="utf-8", errors="replace")
    assert "Import times for custom nodes" in log, comfy_server.log_tail(log_path)
    timing = [line for line in log.splitlines() if re.search(r"seconds.*: " + re.escape(str(pack)) + "$", line)]
    assert timing, f"no import-time line for {pack}:\n{comfy_server.log_tail(log_path)}"
    assert "IMPORT FAILED" not in timing[0], timing[0]
    for bad in (f"Cannot import {pack}", f"Error while calling comfy_entrypoint in {pack}",
                f"Skip {pack} module", "Unable to parse pyproject.toml"):
        assert bad not in log, f"{bad!r} in the server log:\n{comfy_server.log_tail(log_path)}"
    tracebacks = [block for block in log.split("Traceback (most recent call last)")[1:] if wt.PACK_DIR_NAME in block]
    assert not tracebacks, tracebacks[0][:3000]


def test_object_info_lists_the_nodes(server):
    url, _, _ = server
    info = comfy_server.get_json(url + "/object_info")
    for node_id, expected in INPUTS.items():
        assert node_id in info, f"{node_id} missing from /object_info"
        node = info[node_id]
        actual = actual_inputs(node)
        assert actual[:len(expected)] == expected, (
            f"{node_id}: inputs changed (new inputs may only be appended, or saved workflows break)\n"
            f"expected prefix {expected}\nactual {actual}")
        assert node["output"] == OUTPUTS[node_id]
        assert node["display_name"] == DISPLAY[node_id]
        assert node["python_module"] == f"custom_nodes.{wt.PACK_DIR_NAME}"
        assert node["category"].startswith("mask")
        assert node["description"], f"{node_id} has no description"
        aliases = node.get("search_aliases") or []
        for words in SEARCHES:  # the frontend's node search matches name, display_name and search_aliases
            assert any(words in alias.lower() for alias in aliases), f"{node_id}: no search alias for {words!r}"
        for name, spec in (node["input"].get("required") | node["input"].get("optional", {})).items():
            assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert all(node["output_tooltips"]), f"{node_id}: an output has no tooltip"
    # One node alone, as the frontend asks for it after a refresh.
    one = comfy_server.get_json(url + "/object_info/ConceptAttentionSelectMask")
    assert list(one) == ["ConceptAttentionSelectMask"]


def test_example_workflows_are_served(server):
    url, _, pack = server
    templates = comfy_server.get_json(url + "/api/workflow_templates")
    cloned = sorted(p.stem for p in (pack / "workflows").glob("*.json"))
    assert cloned, "the clone has no workflows/*.json (not committed?)"
    assert sorted(templates.get(wt.PACK_DIR_NAME, [])) == cloned
    for name in cloned:
        served_at = f"{url}/api/workflow_templates/{wt.PACK_DIR_NAME}/{quote(name)}"
        served = json.loads(comfy_server.get(served_at + ".json"))
        assert served == json.loads((pack / "workflows" / f"{name}.json").read_text(encoding="utf-8"))
        thumb = comfy_server.get(served_at + ".jpg")
        assert thumb[:3] == b"\xff\xd8\xff", f"{name}.jpg (the template browser's thumbnail) is not a JPEG"
    # The template browser names the category after the folder unless a translation names it (locales/).
    categories = comfy_server.get_json(url + "/i18n")["en"]["templateWorkflows"]["category"]
    assert categories[wt.PACK_DIR_NAME] == wt.DISPLAY_NAME
