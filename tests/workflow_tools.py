"""Shared by the workflow builder (tests/build_workflows.py) and the workflow tests.

- `load_comfy_nodes()` loads ComfyUI's node registry in-process the way `main.py` does: the built-in extra
  nodes, then this pack from a `custom_nodes/` folder through `nodes.init_external_custom_nodes` (so the V3
  `comfy_entrypoint` path is the real one).
- `widget_slots()` gives the order in which the ComfyUI frontend stores a node's `widgets_values`.
- `ui_to_api()` turns a UI (litegraph) workflow into the API prompt that the frontend would queue.
- `check_links()` / `check_widgets()` report problems as strings (empty list = fine).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import os
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "workflows"
PACK_DIR_NAME = "comfyui-concept-attention"  # the folder name a registry / git-clone install uses
DISPLAY_NAME = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["comfy"]["DisplayName"]
PACK_NODE_IDS = ("ConceptAttentionPatch", "ConceptAttentionMasks", "ConceptAttentionFromImage",
                 "ConceptAttentionSelectMask")
# Frontend-only node types: drawn by the UI, never sent to the server.
VIRTUAL_NODES = {"MarkdownNote", "Note"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

# The model files the workflows name, per models/ sub-folder (as ComfyUI's own templates name them).
MODEL_FILES = {
    "diffusion_models": ["flux1-dev.safetensors", "flux1-dev-kontext_fp8_scaled.safetensors",
                         "Chroma1-HD-fp8mixed.safetensors", "qwen_image_edit_2511_bf16.safetensors",
                         "flux-2-klein-4b.safetensors", "z_image_turbo_bf16.safetensors",
                         "krea2_turbo_fp8_scaled.safetensors", "hunyuanvideo1.5_720p_t2v_fp16.safetensors",
                         "wan2.2_ti2v_5B_fp16.safetensors"],
    "text_encoders": ["clip_l.safetensors", "t5xxl_fp16.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors",
                      "qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_3_4b.safetensors",
                      "qwen3vl_4b_fp8_scaled.safetensors", "byt5_small_glyphxl_fp16.safetensors",
                      "umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["ae.safetensors", "qwen_image_vae.safetensors", "flux2-vae.safetensors",
            "hunyuanvideo15_vae_fp16.safetensors", "wan2.2_vae.safetensors"],
    "checkpoints": ["sd3.5_large_fp8_scaled.safetensors"],
}
# Loader node type -> {widget: models/ sub-folder}.
LOADER_FOLDERS = {
    "UNETLoader": {"unet_name": "diffusion_models"},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "VAELoader": {"vae_name": "vae"},
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
}
INPUT_IMAGES = ["example.png"]  # ComfyUI ships input/example.png
# A workflow's API prompt shrunk for the tiny test models (tests/host.py) on a CPU: 64 px images and latents,
# 2 sampling steps, blocks the tiny models have (3 joint blocks), per node type.
SHRINK = {
    "EmptySD3LatentImage": {"width": 64, "height": 64},
    "EmptyFlux2LatentImage": {"width": 64, "height": 64},
    "Flux2Scheduler": {"steps": 2, "width": 64, "height": 64},
    "EmptyHunyuanVideo15Latent": {"width": 64, "height": 64, "length": 5},  # 2 latent frames, 5 decoded
    "Wan22ImageToVideoLatent": {"width": 64, "height": 64, "length": 5},  # 2 latent frames, 5 decoded
    "BasicScheduler": {"steps": 2},
    "ImageScale": {"width": 64, "height": 64},
    "ImageScaleToTotalPixels": {"megapixels": 0.01},  # its minimum: 96x96 for a square image
    "KSampler": {"steps": 2},
    "ConceptAttentionPatch": {"blocks": "1-2"},
    "ConceptAttentionFromImage": {"blocks": "1-2"},
}

_LOADED = None


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.json"))


def load_comfy_nodes():
    """Import ComfyUI's `nodes`, load the built-in extra nodes and this pack (from a temporary custom_nodes
    folder holding a symlink named like a real install). Returns the `nodes` module; idempotent."""
    global _LOADED
    if _LOADED is not None:
        return _LOADED
    import host

    root = host.find_comfyui()
    if root is None:
        raise RuntimeError("ComfyUI not found")
    host.setup_comfyui(root)
    import folder_paths
    import nodes

    saved_path = list(sys.path)
    saved_custom = folder_paths.folder_names_and_paths["custom_nodes"]
    # Kept until the process ends: the pack's package __path__ points into it (lazy imports need it).
    tmp = tempfile.mkdtemp(prefix="ca-custom-nodes-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # removes the symlink, never its target
    os.symlink(REPO, Path(tmp) / PACK_DIR_NAME)
    folder_paths.folder_names_and_paths["custom_nodes"] = ([tmp], set())
    try:
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    finally:
        folder_paths.folder_names_and_paths["custom_nodes"] = saved_custom
        sys.path[:] = saved_path  # init_external_custom_nodes puts ComfyUI/comfy first on sys.path
    _LOADED = nodes
    return nodes


@contextlib.contextmanager
def comfy_folders(root: Path, image_size=(64, 64)):
    """Point ComfyUI's folder_paths at `root` for the duration: models/<folder>/ with empty files of the names
    the workflows use, input/ with the images they load (small generated ones), output/ and temp/."""
    import folder_paths
    import pytest
    from PIL import Image

    with pytest.MonkeyPatch.context() as mp:
        for folder, names in MODEL_FILES.items():
            (root / "models" / folder).mkdir(parents=True)
            for name in names:
                (root / "models" / folder / name).write_bytes(b"")
            exts = folder_paths.folder_names_and_paths[folder][1]
            mp.setitem(folder_paths.folder_names_and_paths, folder, ([str(root / "models" / folder)], exts))
        for sub in ("input", "output", "temp"):
            (root / sub).mkdir()
            mp.setattr(folder_paths, f"{sub}_directory", str(root / sub))
        for i, name in enumerate(INPUT_IMAGES):
            Image.new("RGB", image_size, (90 + 40 * i, 140, 220)).save(root / "input" / name)
        folder_paths.filename_list_cache.clear()
        try:
            yield root
        finally:
            folder_paths.filename_list_cache.clear()


# --- the frontend's view of a node ---------------------------------------------------------------------------

def input_specs(class_) -> list[tuple[str, str, dict, str]]:
    """(name, type, options, category) of the required and optional inputs, in the order the frontend shows
    them. Combos come as type 'COMBO' with their values in options['options']."""
    specs = []
    types = class_.INPUT_TYPES()
    for category in ("required", "optional"):
        for name, spec in (types.get(category) or {}).items():
            spec = tuple(spec) if isinstance(spec, (list, tuple)) else (spec,)
            typ = spec[0]
            opts = dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(typ, (list, tuple)):
                opts["options"] = list(typ)
                typ = "COMBO"
            specs.append((name, typ, opts, category))
    return specs


def is_widget(typ: str, opts: dict) -> bool:
    return typ in WIDGET_TYPES and not opts.get("forceInput")


def widget_slots(class_) -> list[str | None]:
    """Names for the positions of a node's `widgets_values`, as the ComfyUI frontend (1.x) writes them:
    every widget input in input order; after a seed-like INT (or any widget declaring
    control_after_generate) its 'control after generate' value (None here); after an `image_upload` combo
    the upload button's value (None)."""
    slots = []
    for name, typ, opts, _ in input_specs(class_):
        if not is_widget(typ, opts):
            continue
        slots.append(name)
        control = opts.get("control_after_generate")
        if typ == "INT" and control is None:
            control = name in ("seed", "noise_seed")
        if control:
            slots.append(None)
        if opts.get("image_upload"):
            slots.append(None)
    return slots


def socket_inputs(class_) -> list[tuple[str, str, str]]:
    """(name, type, category) of the inputs that are sockets (not widgets)."""
    return [(n, t, c) for n, t, o, c in input_specs(class_) if not is_widget(t, o)]


def outputs(class_) -> list[tuple[str, str]]:
    types = list(class_.RETURN_TYPES)
    names = list(getattr(class_, "RETURN_NAMES", None) or types)
    return [(n, t if isinstance(t, str) else "COMBO") for n, t in zip(names, types)]


def widget_values(node: dict, class_) -> dict:
    slots = widget_slots(class_)
    values = node.get("widgets_values") or []
    if isinstance(values, dict):  # some frontends store a dict
        return {k: v for k, v in values.items() if k in slots}
    return {name: value for name, value in zip(slots, values) if name is not None}


# --- checks and conversion ------------------------------------------------------------------------------------

def link_table(workflow: dict) -> dict[int, list]:
    return {link[0]: link for link in workflow["links"]}


def types_compatible(output_type: str, input_type: str) -> bool:
    if output_type == "*" or input_type == "*":
        return True
    # The frontend accepts a comma-separated union on either side.
    return bool(set(output_type.split(",")) & set(input_type.split(",")))


def check_links(workflow: dict, mappings: dict) -> list[str]:
    problems = []
    by_id = {n["id"]: n for n in workflow["nodes"]}
    for link_id, src, src_slot, dst, dst_slot, ltype in (link[:6] for link in workflow["links"]):
        s, d = by_id.get(src), by_id.get(dst)
        if s is None or d is None:
            problems.append(f"link {link_id}: node {src if s is None else dst} does not exist")
            continue
        s_cls, d_cls = mappings.get(s["type"]), mappings.get(d["type"])
        if s_cls is None or d_cls is None:
            continue  # reported as an unknown node type
        outs = outputs(s_cls)
        if src_slot >= len(outs):
            problems.append(f"link {link_id}: {s['type']} has no output slot {src_slot}")
            continue
        out_name, out_type = outs[src_slot]
        if dst_slot >= len(d["inputs"]):
            problems.append(f"link {link_id}: {d['type']} #{dst} has no input slot {dst_slot}")
            continue
        ui_input = d["inputs"][dst_slot]
        if ui_input.get("link") != link_id:
            problems.append(f"link {link_id}: input slot {dst_slot} of {d['type']} #{dst} does not point back")
        specs = {n: (t, o) for n, t, o, _ in input_specs(d_cls)}
        if ui_input["name"] not in specs:
            problems.append(f"link {link_id}: {d['type']} has no input {ui_input['name']!r}")
            continue
        in_type = specs[ui_input["name"]][0]
        if not types_compatible(out_type, in_type):
            problems.append(f"link {link_id}: {s['type']}.{out_name} ({out_type}) -> "
                            f"{d['type']}.{ui_input['name']} ({in_type}): incompatible types")
        if ltype != out_type:
            problems.append(f"link {link_id}: declared type {ltype!r}, output type {out_type!r}")
        ui_out = s["outputs"][src_slot]
        if link_id not in (ui_out.get("links") or []):
            problems.append(f"link {link_id}: output {out_name} of {s['type']} #{src} does not list it")
    return problems


def check_widgets(workflow: dict, mappings: dict) -> list[str]:
    problems = []
    for node in workflow["nodes"]:
        cls = mappings.get(node["type"])
        if cls is None:
            continue
        where = f"{node['type']} #{node['id']}"
        slots = widget_slots(cls)
        values = node.get("widgets_values") or []
        if len(values) != len(slots):
            problems.append(f"{where}: {len(values)} widget values for {len(slots)} widget slots {slots}")
            continue
        specs = {n: (t, o) for n, t, o, _ in input_specs(cls)}
        for name, value in widget_values(node, cls).items():
            typ, opts = specs[name]
            if typ == "COMBO":
                if value not in opts.get("options", []):
                    problems.append(f"{where}: {name}={value!r} not in {opts.get('options')}")
            elif typ in ("INT", "FLOAT"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    problems.append(f"{where}: {name}={value!r} is not a number")
                    continue
                if typ == "INT" and value != int(value):
                    problems.append(f"{where}: {name}={value!r} is not an integer")
                if "min" in opts and value < opts["min"] or "max" in opts and value > opts["max"]:
                    problems.append(f"{where}: {name}={value!r} outside [{opts.get('min')}, {opts.get('max')}]")
            elif typ == "STRING" and not isinstance(value, str):
                problems.append(f"{where}: {name}={value!r} is not a string")
            elif typ == "BOOLEAN" and not isinstance(value, bool):
                problems.append(f"{where}: {name}={value!r} is not a boolean")
    return problems


def ui_to_api(workflow: dict, mappings: dict) -> dict:
    """The API prompt the frontend queues for this workflow: widget values by name, links as [node, slot].
    Frontend-only and muted/bypassed nodes are left out."""
    links = link_table(workflow)
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) in (2, 4):
            continue
        cls = mappings[node["type"]]
        inputs = widget_values(node, cls)
        for ui_input in node.get("inputs", []):
            if ui_input.get("link") is not None:
                link = links[ui_input["link"]]
                inputs[ui_input["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or node["type"]}}
    return prompt


TITLE_HEIGHT = 30  # litegraph draws a node's title bar above its `pos`


def check_layout(workflow: dict) -> list[str]:
    """Nodes (with their title bars) do not overlap; groups do not overlap; a node is either inside one group
    or outside all of them (litegraph moves a group's nodes with it, so half-in nodes behave oddly)."""
    def box(node):
        (x, y), (w, h) = node["pos"], node["size"]
        return x, y - TITLE_HEIGHT, x + w, y + h

    def overlap(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    def inside(a, g):
        return g[0] <= a[0] and g[1] <= a[1] and a[2] <= g[2] and a[3] <= g[3]

    problems = []
    nodes = workflow["nodes"]
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if overlap(box(a), box(b)):
                problems.append(f"{a['type']} #{a['id']} overlaps {b['type']} #{b['id']}")
    groups = [(g["title"], (g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
                            g["bounding"][1] + g["bounding"][3])) for g in workflow.get("groups", [])]
    for i, (ta, a) in enumerate(groups):
        for tb, b in groups[i + 1:]:
            if overlap(a, b):
                problems.append(f"group {ta!r} overlaps group {tb!r}")
    for node in nodes:
        for title, g in groups:
            if overlap(box(node), g) and not inside(box(node), g):
                problems.append(f"{node['type']} #{node['id']} is half inside group {title!r}")
    return problems
