"""Writes the example workflows in workflows/*.json (ComfyUI UI / litegraph format, version 0.4).

    ~/.venvs/comfyui-ca/bin/python tests/build_workflows.py

Each workflow is described below by its nodes (type, position, widget values by name) and links (by output
and input name). Slots, socket lists and the order of `widgets_values` come from the real node definitions
of the ComfyUI found by tests/host.py, so a renamed input shows up here. tests/test_workflows.py and
tests/test_browser.py check the written files; rerun this after changing a node's inputs, then refresh
the screenshots and thumbnails with `CA_UPDATE_SCREENSHOTS=1 python -m pytest tests/test_browser.py`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workflow_tools as wt  # noqa: E402

PACK_VERSION = "0.1.0"
COMFY_VERSION = "0.25.0"

MODEL_URLS = {
    "flux1-dev.safetensors":
        "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors",
    "flux1-dev-kontext_fp8_scaled.safetensors":
        "https://huggingface.co/Comfy-Org/flux1-kontext-dev_ComfyUI/resolve/main/split_files/diffusion_models/"
        "flux1-dev-kontext_fp8_scaled.safetensors",
    "clip_l.safetensors":
        "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
    "t5xxl_fp16.safetensors":
        "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
    "ae.safetensors":
        "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors",
    "sd3.5_large_fp8_scaled.safetensors":
        "https://huggingface.co/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/"
        "sd3.5_large_fp8_scaled.safetensors?download=true",
    "Chroma1-HD-fp8mixed.safetensors":
        "https://huggingface.co/Comfy-Org/Chroma1-HD_repackaged/resolve/main/split_files/diffusion_models/"
        "Chroma1-HD-fp8mixed.safetensors",
    "t5xxl_fp8_e4m3fn_scaled.safetensors":
        "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp8_e4m3fn_scaled.safetensors",
    "qwen_image_edit_2511_bf16.safetensors":
        "https://huggingface.co/Comfy-Org/Qwen-Image-Edit_ComfyUI/resolve/main/split_files/diffusion_models/"
        "qwen_image_edit_2511_bf16.safetensors",
    "qwen_2.5_vl_7b_fp8_scaled.safetensors":
        "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/text_encoders/"
        "qwen_2.5_vl_7b_fp8_scaled.safetensors",
    "qwen_image_vae.safetensors":
        "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/vae/qwen_image_vae.safetensors",
    "flux-2-klein-4b.safetensors":
        "https://huggingface.co/Comfy-Org/flux2-klein/resolve/main/split_files/diffusion_models/"
        "flux-2-klein-4b.safetensors",
    "qwen_3_4b.safetensors":
        "https://huggingface.co/Comfy-Org/z_image_turbo/resolve/main/split_files/text_encoders/qwen_3_4b.safetensors",
    "flux2-vae.safetensors":
        "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/vae/flux2-vae.safetensors",
    "krea2_turbo_fp8_scaled.safetensors":
        "https://huggingface.co/Comfy-Org/Krea-2/resolve/main/diffusion_models/krea2_turbo_fp8_scaled.safetensors",
    "qwen3vl_4b_fp8_scaled.safetensors":
        "https://huggingface.co/Comfy-Org/Krea-2/resolve/main/text_encoders/qwen3vl_4b_fp8_scaled.safetensors",
    "hunyuanvideo1.5_720p_t2v_fp16.safetensors":
        "https://huggingface.co/Comfy-Org/HunyuanVideo_1.5_repackaged/resolve/main/split_files/diffusion_models/"
        "hunyuanvideo1.5_720p_t2v_fp16.safetensors",
    "byt5_small_glyphxl_fp16.safetensors":
        "https://huggingface.co/Comfy-Org/HunyuanVideo_1.5_repackaged/resolve/main/split_files/text_encoders/"
        "byt5_small_glyphxl_fp16.safetensors",
    "hunyuanvideo15_vae_fp16.safetensors":
        "https://huggingface.co/Comfy-Org/HunyuanVideo_1.5_repackaged/resolve/main/split_files/vae/"
        "hunyuanvideo15_vae_fp16.safetensors",
    "wan2.2_ti2v_5B_fp16.safetensors":
        "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/diffusion_models/"
        "wan2.2_ti2v_5B_fp16.safetensors",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors":
        "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/"
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "wan2.2_vae.safetensors":
        "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae/"
        "wan2.2_vae.safetensors",
    "z_image_turbo_bf16.safetensors":
        "https://huggingface.co/Comfy-Org/z_image_turbo/resolve/main/split_files/diffusion_models/"
        "z_image_turbo_bf16.safetensors",
}
FOLDER_OF = {name: folder for folder, names in wt.MODEL_FILES.items() for name in names}

# The view a workflow opens with (its `extra.ds`, used when the file is dropped on or opened in the canvas; the
# template browser fits the view itself): every node and group inside the canvas area that ComfyUI's frontend
# (1.45) leaves free in a 1920x1080 window, which is then free in larger windows too (tests/test_browser.py
# checks both). The side toolbar covers the left 59 px; the workflow tabs and the row of the breadcrumb and
# the Run button the top 94 px; the canvas controls the bottom right 52 px.
VIEW = {"width": 1920, "height": 1080, "left": 59, "top": 94, "bottom": 52, "margin": 24}
MIN_SCALE = 0.6  # below it litegraph stops drawing node text (low-quality rendering)
MAX_SCALE = 0.85

GROUP_COLORS = {"models": "#3f789e", "generate": "#8A8", "concepts": "#a1309b", "edit": "#b06634",
                "output": "#444"}


class Node:
    def __init__(self, graph, node_id, type_, cls, pos, size, widgets, title, color, models):
        self.graph, self.id, self.type, self.cls = graph, node_id, type_, cls
        self.pos, self.size, self.widgets, self.title = list(pos), size, dict(widgets or {}), title
        self.color, self.models = color, models
        self.in_links: dict[str, int] = {}
        self.out_links: dict[int, list[int]] = {}

    def out_slot(self, output) -> tuple[int, str]:
        if self.type in wt.VIRTUAL_NODES:
            raise ValueError("notes have no outputs")
        outs = wt.outputs(self.cls)
        for i, (name, typ) in enumerate(outs):
            if output in (i, name, typ):
                return i, typ
        raise KeyError(f"{self.type} has no output {output!r}: {outs}")


class Graph:
    def __init__(self, name: str):
        self.name = name
        self.nodes: list[Node] = []
        self.links: list[list] = []
        self.groups: list[tuple[str, list[Node], str]] = []

    def add(self, type_, pos, widgets=None, *, size=None, title=None, color=None):
        mappings = wt.load_comfy_nodes().NODE_CLASS_MAPPINGS
        cls = None if type_ in wt.VIRTUAL_NODES else mappings[type_]
        models = None
        folders = wt.LOADER_FOLDERS.get(type_, {})
        if folders:
            models = [{"name": widgets[w], "url": MODEL_URLS[widgets[w]], "directory": folder}
                      for w, folder in folders.items()]
            for entry in models:
                assert FOLDER_OF[entry["name"]] == entry["directory"], entry
        node = Node(self, len(self.nodes) + 1, type_, cls, pos, size, widgets, title, color, models)
        self.nodes.append(node)
        return node

    def note(self, pos, size, text):
        node = self.add("MarkdownNote", pos, size=size)
        node.widgets = {"text": text}
        return node

    def link(self, src: Node, output, dst: Node, input_name: str):
        slot, typ = src.out_slot(output)
        sockets = [n for n, _, _ in wt.socket_inputs(dst.cls)]
        if input_name not in sockets:
            raise KeyError(f"{dst.type} has no socket input {input_name!r}: {sockets}")
        if input_name in dst.in_links:
            raise ValueError(f"{dst.type}.{input_name} linked twice")
        link_id = len(self.links) + 1
        self.links.append([link_id, src.id, slot, dst.id, None, typ])  # target slot filled in by to_json
        dst.in_links[input_name] = link_id
        src.out_links.setdefault(slot, []).append(link_id)
        return link_id

    def group(self, title, members, color):
        self.groups.append((title, members, color))

    # --- serialisation ---------------------------------------------------------------------------------------

    def _widgets_values(self, node: Node) -> list:
        if node.type in wt.VIRTUAL_NODES:
            return [node.widgets["text"]]
        specs = {n: (t, o) for n, t, o, _ in wt.input_specs(node.cls)}
        unknown = set(node.widgets) - set(specs)
        if unknown:
            raise KeyError(f"{node.type}: unknown widgets {unknown}")
        values = []
        last = None
        for slot in wt.widget_slots(node.cls):
            if slot is None:  # control_after_generate value or the image upload button
                values.append("image" if specs[last][1].get("image_upload") else "randomize")
                continue
            last = slot
            typ, opts = specs[slot]
            if slot in node.widgets:
                values.append(node.widgets[slot])
            elif "default" in opts:
                values.append(opts["default"])
            elif typ == "COMBO" and opts.get("options"):
                values.append(opts["options"][0])
            else:
                raise KeyError(f"{node.type}: no value for widget {slot!r}")
        return values

    def _size(self, node: Node) -> list[float]:
        if node.size:
            return list(node.size)
        widgets = [(t, o) for _, t, o, _ in wt.input_specs(node.cls) if wt.is_widget(t, o)]
        slots = max(len(wt.socket_inputs(node.cls)), len(wt.outputs(node.cls)))
        height = 12 + 24 * slots + sum(110 if o.get("multiline") else 24 for _, o in widgets)
        height += 24 * (len(wt.widget_slots(node.cls)) - len(widgets))
        return [320, max(height, 46)]

    def _order(self) -> dict[int, int]:
        deps = {n.id: set() for n in self.nodes}
        for _, src, _, dst, _, _ in self.links:
            deps[dst].add(src)
        order, done = {}, set()
        while len(done) < len(self.nodes):
            ready = sorted(i for i in deps if i not in done and deps[i] <= done)
            if not ready:
                raise ValueError("cycle")
            for i in ready:
                order[i] = len(order)
                done.add(i)
        return order

    def to_json(self) -> dict:
        order = self._order()
        links = {link[0]: link for link in self.links}
        nodes = []
        for node in self.nodes:
            entry = {"id": node.id, "type": node.type, "pos": node.pos, "size": self._size(node), "flags": {},
                     "order": order[node.id], "mode": 0, "inputs": [], "outputs": []}
            if node.type not in wt.VIRTUAL_NODES:
                for name, typ, category in wt.socket_inputs(node.cls):
                    if category == "optional" and name not in node.in_links:
                        continue
                    link_id = node.in_links.get(name)
                    if link_id is not None:
                        links[link_id][4] = len(entry["inputs"])
                    entry["inputs"].append({"name": name, "type": typ, "link": link_id})
                for slot, (name, typ) in enumerate(wt.outputs(node.cls)):
                    out = {"name": name, "type": typ, "links": node.out_links.get(slot, [])}
                    if out["links"]:
                        out["slot_index"] = slot
                    entry["outputs"].append(out)
            if node.title:
                entry["title"] = node.title
            ours = node.type in wt.PACK_NODE_IDS
            entry["properties"] = {"cnr_id": "comfyui-concept-attention" if ours else "comfy-core",
                                   "ver": PACK_VERSION if ours else COMFY_VERSION,
                                   "Node name for S&R": node.type}
            if node.type in wt.VIRTUAL_NODES:
                entry["properties"] = {}
            if node.models:
                entry["properties"]["models"] = node.models
            entry["widgets_values"] = self._widgets_values(node)
            if node.color:
                entry["color"], entry["bgcolor"] = node.color
            nodes.append(entry)
        groups = []
        for i, (title, members, color) in enumerate(self.groups, start=1):
            boxes = [(n.pos[0], n.pos[1], *self._size(n)) for n in members]
            x0 = min(b[0] for b in boxes) - 20
            y0 = min(b[1] for b in boxes) - 30 - 50
            x1 = max(b[0] + b[2] for b in boxes) + 20
            y1 = max(b[1] + b[3] for b in boxes) + 20
            groups.append({"id": i, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0], "color": color,
                           "font_size": 24, "flags": {}})
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": nodes,
                "links": self.links, "groups": groups, "config": {}, "extra": {"ds": self._view(nodes, groups)},
                "version": 0.4}

    def _view(self, nodes, groups) -> dict:
        """Scale and offset that show all nodes and groups in the free canvas area of VIEW, from its top left."""
        boxes = [(x, y - wt.TITLE_HEIGHT, x + w, y + h) for (x, y), (w, h) in ((n["pos"], n["size"]) for n in nodes)]
        boxes += [(x, y, x + w, y + h) for x, y, w, h in (g["bounding"] for g in groups)]
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        room_w = VIEW["width"] - VIEW["left"] - 2 * VIEW["margin"]
        room_h = VIEW["height"] - VIEW["top"] - VIEW["bottom"] - 2 * VIEW["margin"]
        scale = min(MAX_SCALE, room_w / (x1 - x0), room_h / (y1 - y0))
        if scale < MIN_SCALE:
            raise ValueError(f"{self.name}: {x1 - x0:.0f} x {y1 - y0:.0f} is too large to open readable in a "
                             f"{VIEW['width']}x{VIEW['height']} window; lay the nodes out more compactly")
        scale = math.floor(scale * 1000) / 1000
        # litegraph draws a graph point p at screen (p + offset) * scale
        offset = [round((VIEW["left"] + VIEW["margin"]) / scale - x0, 1),
                  round((VIEW["top"] + VIEW["margin"]) / scale - y0, 1)]
        return {"scale": scale, "offset": offset}


# --- shared building blocks ------------------------------------------------------------------------------------

NEGATIVE_COLOR = ("#322", "#533")
POSITIVE_COLOR = ("#232", "#353")


def flux_loaders(g: Graph, x, y, unet="flux1-dev.safetensors"):
    model = g.add("UNETLoader", (x, y), {"unet_name": unet, "weight_dtype": "default"}, size=[320, 82])
    clip = g.add("DualCLIPLoader", (x, y + 140),
                 {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors", "type": "flux",
                  "device": "default"}, size=[320, 130])
    vae = g.add("VAELoader", (x, y + 330), {"vae_name": "ae.safetensors"}, size=[320, 58])
    return model, clip, vae


def single_encoder_loaders(g: Graph, x, y, unet, text_encoder, clip_type, vae):
    """Load Diffusion Model, Load CLIP (with the `type` ComfyUI's template of the family sets) and Load VAE."""
    model = g.add("UNETLoader", (x, y), {"unet_name": unet, "weight_dtype": "default"}, size=[320, 82])
    clip = g.add("CLIPLoader", (x, y + 140), {"clip_name": text_encoder, "type": clip_type, "device": "default"},
                 size=[320, 106])
    vae = g.add("VAELoader", (x, y + 310), {"vae_name": vae}, size=[320, 58])
    return model, clip, vae


def model_files(*loaders: Node) -> str:
    """The note's list of the files these loaders load, by models/ folder, with their download links."""
    by_folder: dict[str, list[str]] = {}
    for loader in loaders:
        for entry in loader.models:
            by_folder.setdefault(entry["directory"], []).append(f"[{entry['name']}]({entry['url']})")
    lines = [f"- {folder}/{', '.join(links)}" for folder, links in by_folder.items()]
    return "\n".join(["**Models** (ComfyUI/models/...)", *lines]) + "\n"


def flux_prompt(g: Graph, clip, x, y, text, guidance=3.5, title="Prompt"):
    """CLIPTextEncode -> FluxGuidance (positive) and ConditioningZeroOut (negative), as ComfyUI's Flux
    templates wire them for cfg 1."""
    enc = g.add("CLIPTextEncode", (x, y), {"text": text}, size=[400, 160], title=title, color=POSITIVE_COLOR)
    g.link(clip, "CLIP", enc, "clip")
    pos = g.add("FluxGuidance", (x, y + 210), {"guidance": guidance}, size=[400, 58])
    g.link(enc, 0, pos, "conditioning")
    neg = g.add("ConditioningZeroOut", (x, y + 320), size=[400, 26])
    g.link(enc, 0, neg, "conditioning")
    return enc, pos, neg


def ksampler(g: Graph, x, y, model, positive, negative, latent, *, steps=20, cfg=1.0, sampler="euler",
             scheduler="simple", denoise=1.0, seed=42, title=None):
    ks = g.add("KSampler", (x, y), {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler,
                                    "scheduler": scheduler, "denoise": denoise}, size=[320, 262], title=title)
    g.link(model, 0, ks, "model")
    g.link(positive, 0, ks, "positive")
    g.link(negative, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    return ks


def image_out(g: Graph, type_, pos, title=None, prefix=None, size=(380, 420)):
    widgets = {"filename_prefix": prefix} if type_ == "SaveImage" else {}
    return g.add(type_, pos, widgets, size=list(size), title=title)


FLUX_FILES = """**Models** (ComfyUI/models/...)
- diffusion_models/[flux1-dev.safetensors](https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors)
- text_encoders/[clip_l.safetensors](https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors), [t5xxl_fp16.safetensors](https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors)
- vae/[ae.safetensors](https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors)
"""

DOG_PROMPT = ("a photo of a corgi dog sitting on the grass in a sunny park, a tree and blue sky in the "
              "background")
DOG_CONCEPTS = "dog, grass, tree, sky"
DRAWING_CAPTION = ("a child's drawing of a girl with yellow hair in a pink dress standing on green grass "
                   "under a blue sky with white clouds")


# --- the workflows ---------------------------------------------------------------------------------------------

def generation_tail(g: Graph, ca, ks, vae, prefix):
    """VAE Decode, Concept Attention Masks (decoded image as overlay) and the previews, for (a) and (e)."""
    dec = g.add("VAEDecode", (860, 330), size=[320, 46])
    g.link(ks, 0, dec, "samples")
    g.link(vae, "VAE", dec, "vae")
    masks = g.add("ConceptAttentionMasks", (1240, 0), size=[380, 118])
    g.link(ca, "concept_attention", masks, "concept_attention")
    g.link(ks, 0, masks, "latent")
    g.link(dec, 0, masks, "image")
    seg = image_out(g, "PreviewImage", (1240, 220), title="Segmentation")
    g.link(masks, "segmentation", seg, "images")
    save = image_out(g, "SaveImage", (1680, 0), prefix=prefix)
    g.link(dec, 0, save, "images")
    heat = image_out(g, "PreviewImage", (1680, 500), title="Heatmaps (one per concept)")
    g.link(masks, "heatmaps", heat, "images")
    g.group("Sample", [ks, dec], GROUP_COLORS["generate"])
    g.group("Concept masks", [masks, seg], GROUP_COLORS["concepts"])
    return dec, masks


def flux_generation_masks() -> Graph:
    g = Graph("Flux - masks while generating")
    model, clip, vae = flux_loaders(g, 0, 0)
    g.note((0, 520), [320, 330], FLUX_FILES + """
**Concept Attention** records one map per concept while KSampler runs; the image itself is unchanged.

1. Write the prompt and the concepts (comma separated; add `background` or other scene parts so every
   pixel has a concept to belong to).
2. Run. *Concept Attention Masks* gives one MASK per concept (in list order), heatmaps and a
   segmentation, drawn over the decoded image.
""")
    ca = g.add("ConceptAttentionPatch", (400, 0), {"concepts": DOG_CONCEPTS}, size=[400, 250])
    g.link(model, "MODEL", ca, "model")
    g.link(clip, "CLIP", ca, "clip")
    enc, pos, neg = flux_prompt(g, clip, 400, 320, DOG_PROMPT)
    latent = g.add("EmptySD3LatentImage", (400, 720), {"width": 1024, "height": 1024, "batch_size": 1},
                   size=[400, 106])
    ks = ksampler(g, 860, 0, ca, pos, neg, latent)
    generation_tail(g, ca, ks, vae, "concept_attention/flux")
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    g.group("Prompt and Concept Attention", [ca, enc, pos, neg, latent], GROUP_COLORS["generate"])
    return g


def masks_from_image() -> Graph:
    g = Graph("Flux - masks of an existing image")
    model, clip, vae = flux_loaders(g, 0, 0)
    image = g.add("LoadImage", (0, 500), {"image": "example.png"}, size=[320, 380])
    g.note((0, 960), [320, 280], FLUX_FILES + FROM_IMAGE_NOTE)
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    concept_masks_of_image(g, model, clip, vae, image)
    return g


FROM_IMAGE_NOTE = """
Load any image, name the concepts to find and describe the image in `caption` (optional). One partial
forward pass of the model per sample gives the maps; *Concept Mask* picks one concept's mask by name.

For a picture you generated, wire its sampler's LATENT to `latent` instead of the image: no VAE encode.
"""


def concept_masks_of_image(g: Graph, model, clip, vae, image):
    """Concept Attention from Image on the drawing, Concept Mask `dress` and the previews, from x=400."""
    fi = g.add("ConceptAttentionFromImage", (400, 0),
               {"concepts": "girl, hair, dress, grass, sky", "caption": DRAWING_CAPTION, "noise_level": 0.5,
                "samples": 1, "seed": 0}, size=[400, 420])
    for src, name in ((model, "model"), (clip, "clip"), (vae, "vae"), (image, "image")):
        g.link(src, 0, fi, name)
    cm = g.add("ConceptAttentionSelectMask", (400, 500), {"concept": "dress", "mode": "argmax",
                                                          "threshold": 0.5}, size=[400, 130])
    g.link(fi, "concept_maps", cm, "concept_maps")
    seg = image_out(g, "PreviewImage", (860, 0), title="Segmentation")
    g.link(fi, "segmentation", seg, "images")
    heat = image_out(g, "PreviewImage", (860, 500), title="Heatmaps (one per concept)")
    g.link(fi, "heatmaps", heat, "images")
    mask = image_out(g, "MaskPreview", (1300, 0), title="Mask: dress")
    g.link(cm, 0, mask, "mask")
    g.group("Concept masks", [fi, cm], GROUP_COLORS["concepts"])


def attention_guided_inpainting() -> Graph:
    g = Graph("Flux - inpaint one concept")
    model, clip, vae = flux_loaders(g, 0, 0)
    g.note((0, 520), [320, 400], FLUX_FILES + """
1. The first KSampler makes the picture with Concept Attention recording the concepts.
2. *Concept Mask* picks `dog`; Grow Mask and Feather Mask widen and soften it.
3. Set Latent Noise Mask limits the second KSampler to that region: it paints what the second prompt
   asks for (a cat) and keeps the rest of the picture.

With an inpainting model (Flux Fill) use InpaintModelConditioning instead of Set Latent Noise Mask.
""")
    ca = g.add("ConceptAttentionPatch", (400, 0), {"concepts": DOG_CONCEPTS}, size=[400, 250])
    g.link(model, 0, ca, "model")
    g.link(clip, 0, ca, "clip")
    enc, pos, neg = flux_prompt(g, clip, 400, 320, DOG_PROMPT)
    latent = g.add("EmptySD3LatentImage", (400, 720), {"width": 1024, "height": 1024, "batch_size": 1},
                   size=[400, 106])
    ks = ksampler(g, 860, 0, ca, pos, neg, latent, title="KSampler (picture)")
    dec = g.add("VAEDecode", (860, 330), size=[320, 46])
    g.link(ks, 0, dec, "samples")
    g.link(vae, 0, dec, "vae")
    masks = g.add("ConceptAttentionMasks", (860, 450), size=[320, 118])
    g.link(ca, "concept_attention", masks, "concept_attention")
    g.link(ks, 0, masks, "latent")
    g.link(dec, 0, masks, "image")
    first = image_out(g, "PreviewImage", (860, 640), title="Picture", size=(320, 360))
    g.link(dec, 0, first, "images")

    cm = g.add("ConceptAttentionSelectMask", (1240, 0), {"concept": "dog", "mode": "argmax", "threshold": 0.5},
               size=[320, 130])
    g.link(masks, "concept_maps", cm, "concept_maps")
    grow = g.add("GrowMask", (1240, 190), {"expand": 24, "tapered_corners": True}, size=[320, 82])
    g.link(cm, 0, grow, "mask")
    feather = g.add("FeatherMask", (1240, 330), {"left": 24, "top": 24, "right": 24, "bottom": 24},
                    size=[320, 130])
    g.link(grow, 0, feather, "mask")
    noise_mask = g.add("SetLatentNoiseMask", (1240, 520), size=[320, 46])
    g.link(ks, 0, noise_mask, "samples")
    g.link(feather, 0, noise_mask, "mask")
    mask_view = image_out(g, "MaskPreview", (1240, 640), title="Inpaint mask", size=(320, 360))
    g.link(feather, 0, mask_view, "mask")

    enc2, pos2, neg2 = flux_prompt(g, clip, 1640, 0, DOG_PROMPT.replace("corgi dog", "tabby cat"),
                                   title="Prompt for the masked region")
    ks2 = ksampler(g, 1640, 420, model, pos2, neg2, noise_mask, seed=7, title="KSampler (inpaint)")
    dec2 = g.add("VAEDecode", (1640, 740), size=[320, 46])
    g.link(ks2, 0, dec2, "samples")
    g.link(vae, 0, dec2, "vae")
    save = image_out(g, "SaveImage", (2100, 0), prefix="concept_attention/inpainted")
    g.link(dec2, 0, save, "images")
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    g.group("1. Picture with Concept Attention", [ca, enc, pos, neg, latent, ks, dec, masks, first],
            GROUP_COLORS["generate"])
    g.group("2. Mask of one concept", [cm, grow, feather, noise_mask, mask_view], GROUP_COLORS["concepts"])
    g.group("3. Inpaint the region", [enc2, pos2, neg2, ks2, dec2], GROUP_COLORS["edit"])
    return g


def concept_compositing() -> Graph:
    g = Graph("Flux - composite a concept")
    model, clip, vae = flux_loaders(g, 0, 0)
    g.note((0, 520), [320, 330], FLUX_FILES + """
Cuts one concept out of the subject image and pastes it onto the background image: both are scaled to
the same size, *Concept Attention from Image* maps the subject, *Concept Mask* picks `girl`, and Image
Composite Masked pastes the subject onto the background inside that mask.
""")
    subject = g.add("LoadImage", (400, 0), {"image": "example.png"}, size=[320, 380], title="Subject image")
    subject_scaled = g.add("ImageScale", (400, 440), {"upscale_method": "lanczos", "width": 1024, "height": 1024,
                                                      "crop": "center"}, size=[320, 154])
    g.link(subject, 0, subject_scaled, "image")
    background = g.add("LoadImage", (400, 660), {"image": "example.png"}, size=[320, 380],
                       title="Background image")
    background_scaled = g.add("ImageScale", (400, 1100), {"upscale_method": "lanczos", "width": 1024,
                                                          "height": 1024, "crop": "center"}, size=[320, 154])
    g.link(background, 0, background_scaled, "image")
    fi = g.add("ConceptAttentionFromImage", (800, 0),
               {"concepts": "girl, grass, sky, cloud", "caption": DRAWING_CAPTION, "noise_level": 0.5,
                "samples": 1, "seed": 0}, size=[400, 420])
    for src, name in ((model, "model"), (clip, "clip"), (vae, "vae"), (subject_scaled, "image")):
        g.link(src, 0, fi, name)
    cm = g.add("ConceptAttentionSelectMask", (800, 500), {"concept": "girl", "mode": "argmax", "threshold": 0.5},
               size=[400, 130])
    g.link(fi, "concept_maps", cm, "concept_maps")
    feather = g.add("FeatherMask", (800, 690), {"left": 8, "top": 8, "right": 8, "bottom": 8}, size=[400, 130])
    g.link(cm, 0, feather, "mask")
    comp = g.add("ImageCompositeMasked", (1260, 0), {"x": 0, "y": 0, "resize_source": False}, size=[320, 150])
    g.link(background_scaled, 0, comp, "destination")
    g.link(subject_scaled, 0, comp, "source")
    g.link(feather, 0, comp, "mask")
    mask_view = image_out(g, "MaskPreview", (1260, 240), title="Cut-out mask", size=(320, 360))
    g.link(feather, 0, mask_view, "mask")
    save = image_out(g, "SaveImage", (1640, 0), prefix="concept_attention/composite")
    g.link(comp, 0, save, "images")
    seg = image_out(g, "PreviewImage", (1640, 500), title="Segmentation")
    g.link(fi, "segmentation", seg, "images")
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    g.group("Images", [subject, subject_scaled, background, background_scaled], GROUP_COLORS["output"])
    g.group("Concept mask", [fi, cm, feather], GROUP_COLORS["concepts"])
    return g


def sd35_generation_masks() -> Graph:
    g = Graph("SD3.5 - masks while generating")
    ckpt = g.add("CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd3.5_large_fp8_scaled.safetensors"},
                 size=[320, 98])
    g.note((0, 200), [320, 330], """**Model** (ComfyUI/models/...)
- checkpoints/[sd3.5_large_fp8_scaled.safetensors](https://huggingface.co/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/sd3.5_large_fp8_scaled.safetensors?download=true)
  (includes the CLIP-L, CLIP-G and T5 text encoders)

SD3 Medium and SD3.5 Medium / Large Turbo work the same way. By default the maps come from all joint
blocks of the model (set `blocks` in the node's advanced inputs to choose).

Concept Attention records one map per concept while KSampler runs; the image itself is unchanged.
""")
    ca = g.add("ConceptAttentionPatch", (400, 0), {"concepts": DOG_CONCEPTS}, size=[400, 250])
    g.link(ckpt, "MODEL", ca, "model")
    g.link(ckpt, "CLIP", ca, "clip")
    pos = g.add("CLIPTextEncode", (400, 320), {"text": DOG_PROMPT}, size=[400, 160], title="Positive Prompt",
                color=POSITIVE_COLOR)
    g.link(ckpt, "CLIP", pos, "clip")
    neg = g.add("CLIPTextEncode", (400, 540), {"text": ""}, size=[400, 120], title="Negative Prompt",
                color=NEGATIVE_COLOR)
    g.link(ckpt, "CLIP", neg, "clip")
    latent = g.add("EmptySD3LatentImage", (400, 720), {"width": 1024, "height": 1024, "batch_size": 1},
                   size=[400, 106])
    ks = ksampler(g, 860, 0, ca, pos, neg, latent, steps=28, cfg=4.5, scheduler="sgm_uniform")
    generation_tail(g, ca, ks, ckpt, "concept_attention/sd35")
    g.group("Model", [ckpt], GROUP_COLORS["models"])
    g.group("Prompt and Concept Attention", [ca, pos, neg, latent], GROUP_COLORS["generate"])
    return g


def kontext_concept_edit() -> Graph:
    g = Graph("Flux Kontext - edit one concept")
    model, clip, vae = flux_loaders(g, 0, 0, unet="flux1-dev-kontext_fp8_scaled.safetensors")
    image = g.add("LoadImage", (0, 500), {"image": "example.png"}, size=[320, 380])
    g.note((0, 960), [320, 360], """**Models** (ComfyUI/models/...)
- diffusion_models/[flux1-dev-kontext_fp8_scaled.safetensors](https://huggingface.co/Comfy-Org/flux1-kontext-dev_ComfyUI/resolve/main/split_files/diffusion_models/flux1-dev-kontext_fp8_scaled.safetensors)
- text_encoders/[clip_l.safetensors](https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors), [t5xxl_fp16.safetensors](https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors)
- vae/[ae.safetensors](https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors)

Flux Kontext edits the whole picture; this workflow keeps the edit only inside one concept's region:
*Concept Attention from Image* (with the same Kontext model) maps the input, *Concept Mask* picks `dress`,
and Image Composite Masked pastes the edited pixels back only there.
""")
    scaled = g.add("FluxKontextImageScale", (400, 0), size=[400, 26])
    g.link(image, 0, scaled, "image")
    enc_img = g.add("VAEEncode", (400, 100), size=[400, 46])
    g.link(scaled, 0, enc_img, "pixels")
    g.link(vae, 0, enc_img, "vae")
    enc = g.add("CLIPTextEncode", (400, 220),
                {"text": "Change the pink dress to a blue denim dress, keep everything else unchanged"},
                size=[400, 160], title="Edit instruction", color=POSITIVE_COLOR)
    g.link(clip, 0, enc, "clip")
    ref = g.add("ReferenceLatent", (400, 440), size=[400, 46])
    g.link(enc, 0, ref, "conditioning")
    g.link(enc_img, 0, ref, "latent")
    guid = g.add("FluxGuidance", (400, 550), {"guidance": 2.5}, size=[400, 58])
    g.link(ref, 0, guid, "conditioning")
    neg = g.add("ConditioningZeroOut", (400, 670), size=[400, 26])
    g.link(enc, 0, neg, "conditioning")
    ks = ksampler(g, 860, 0, model, guid, neg, enc_img)
    dec = g.add("VAEDecode", (860, 330), size=[320, 46])
    g.link(ks, 0, dec, "samples")
    g.link(vae, 0, dec, "vae")
    edited = image_out(g, "PreviewImage", (860, 450), title="Kontext edit (whole image)", size=(320, 360))
    g.link(dec, 0, edited, "images")

    region = confine_to_concept(g, model, clip, vae, scaled, dec, "concept_attention/kontext_edit", x=1240)
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    g.group("Flux Kontext edit", [scaled, enc_img, enc, ref, guid, neg, ks, dec, edited], GROUP_COLORS["edit"])
    g.group("Region of one concept", region, GROUP_COLORS["concepts"])
    return g


def confine_to_concept(g: Graph, model, clip, vae, original, edited, prefix, x):
    """Concept Attention from Image maps the original, Concept Mask picks `dress`, Grow and Feather soften it
    and Image Composite Masked pastes the edited image onto the original inside it. Returns the mask nodes."""
    fi = g.add("ConceptAttentionFromImage", (x, 0),
               {"concepts": "girl, dress, hair, grass, sky", "caption": DRAWING_CAPTION, "noise_level": 0.5,
                "samples": 1, "seed": 0}, size=[400, 420])
    for src, name in ((model, "model"), (clip, "clip"), (vae, "vae"), (original, "image")):
        g.link(src, 0, fi, name)
    cm = g.add("ConceptAttentionSelectMask", (x, 500), {"concept": "dress", "mode": "argmax", "threshold": 0.5},
               size=[400, 130])
    g.link(fi, "concept_maps", cm, "concept_maps")
    grow = g.add("GrowMask", (x, 690), {"expand": 16, "tapered_corners": True}, size=[400, 82])
    g.link(cm, 0, grow, "mask")
    feather = g.add("FeatherMask", (x, 830), {"left": 16, "top": 16, "right": 16, "bottom": 16}, size=[400, 130])
    g.link(grow, 0, feather, "mask")
    comp = g.add("ImageCompositeMasked", (x + 460, 0), {"x": 0, "y": 0, "resize_source": False}, size=[320, 150])
    g.link(original, 0, comp, "destination")
    g.link(edited, 0, comp, "source")
    g.link(feather, 0, comp, "mask")
    mask_view = image_out(g, "MaskPreview", (x + 460, 240), title="Edit region", size=(320, 360))
    g.link(feather, 0, mask_view, "mask")
    save = image_out(g, "SaveImage", (x + 840, 0), prefix=prefix)
    g.link(comp, 0, save, "images")
    return [fi, cm, grow, feather]


def chroma_masks_from_image() -> Graph:
    g = Graph("Chroma - masks of an image")
    model, clip, vae = single_encoder_loaders(g, 0, 0, "Chroma1-HD-fp8mixed.safetensors",
                                              "t5xxl_fp8_e4m3fn_scaled.safetensors", "chroma", "ae.safetensors")
    image = g.add("LoadImage", (0, 470), {"image": "example.png"}, size=[320, 380])
    g.note((0, 930), [320, 290], model_files(model, clip, vae) + """
Chroma1-Base, Chroma1-Flash and the earlier Chroma releases work the same. For Chroma1-Radiance (pixel
space) load `chroma-radiance-x0.safetensors` and pick `pixel_space` in Load VAE.
""" + FROM_IMAGE_NOTE)
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    concept_masks_of_image(g, model, clip, vae, image)
    return g


def qwen_image_edit_concept() -> Graph:
    g = Graph("Qwen-Image-Edit - edit one concept")
    model, clip, vae = single_encoder_loaders(g, 0, 0, "qwen_image_edit_2511_bf16.safetensors",
                                              "qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_image",
                                              "qwen_image_vae.safetensors")
    image = g.add("LoadImage", (0, 470), {"image": "example.png"}, size=[320, 380])
    g.note((0, 930), [320, 420], model_files(model, clip, vae) + """
Qwen-Image-Edit 2511 edits from an instruction, but it may change more than you asked for. This workflow
keeps the edit inside one concept's region: *Concept Attention from Image* (with the same model) maps the
input, *Concept Mask* picks `dress`, and Image Composite Masked pastes the edited pixels back only there.

Qwen-Image-Edit 2509 works the same with its own file.
""")
    scaled = g.add("FluxKontextImageScale", (400, 0), size=[400, 26])
    g.link(image, 0, scaled, "image")
    latent = g.add("VAEEncode", (400, 100), size=[400, 46])
    g.link(scaled, 0, latent, "pixels")
    g.link(vae, 0, latent, "vae")
    conditions = []
    for y, text, title, color, height in ((220, "Change the pink dress to a blue denim dress, keep everything "
                                                "else unchanged", "Edit instruction", POSITIVE_COLOR, 250),
                                          (540, "", "Negative", NEGATIVE_COLOR, 220)):
        enc = g.add("TextEncodeQwenImageEditPlus", (400, y), {"prompt": text}, size=[400, height], title=title,
                    color=color)
        g.link(clip, 0, enc, "clip")
        g.link(scaled, 0, enc, "image1")
        ref = g.add("ReferenceLatent", (400, 820 + 100 * len(conditions)), size=[400, 46])
        g.link(enc, 0, ref, "conditioning")
        g.link(latent, 0, ref, "latent")
        conditions += [enc, ref]
    shift = g.add("ModelSamplingAuraFlow", (860, 0), {"shift": 3.1}, size=[320, 58])
    g.link(model, 0, shift, "model")
    norm = g.add("CFGNorm", (860, 110), {"strength": 1.0}, size=[320, 58])
    g.link(shift, 0, norm, "model")
    ks = ksampler(g, 860, 220, norm, conditions[1], conditions[3], latent, steps=40, cfg=4.0)
    dec = g.add("VAEDecode", (860, 540), size=[320, 46])
    g.link(ks, 0, dec, "samples")
    g.link(vae, 0, dec, "vae")
    edited = image_out(g, "PreviewImage", (860, 640), title="Edit (whole image)", size=(320, 360))
    g.link(dec, 0, edited, "images")
    region = confine_to_concept(g, model, clip, vae, scaled, dec, "concept_attention/qwen_image_edit", x=1240)
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    g.group("Qwen-Image-Edit", [scaled, latent, *conditions, shift, norm, ks, dec, edited], GROUP_COLORS["edit"])
    g.group("Region of one concept", region, GROUP_COLORS["concepts"])
    return g


def custom_sampler(g: Graph, x, y, model, positive, negative, latent, sampler, sigmas, seed, title, cfg=1.0):
    """RandomNoise, CFGGuider and SamplerCustomAdvanced, as ComfyUI's Flux.2 and HunyuanVideo templates sample.
    Returns the three nodes."""
    noise = g.add("RandomNoise", (x, y), {"noise_seed": seed}, size=[320, 82])
    guider = g.add("CFGGuider", (x, y + 140), {"cfg": cfg}, size=[320, 98])
    g.link(model, 0, guider, "model")
    g.link(positive, 0, guider, "positive")
    g.link(negative, 0, guider, "negative")
    run = g.add("SamplerCustomAdvanced", (x, y + 300), size=[320, 106], title=title)
    for src, name in ((noise, "noise"), (guider, "guider"), (sampler, "sampler"), (sigmas, "sigmas"),
                      (latent, "latent_image")):
        g.link(src, 0, run, name)
    return [noise, guider, run]


def klein_inpainting() -> Graph:
    g = Graph("Flux.2 Klein - inpaint one concept")
    model, clip, vae = single_encoder_loaders(g, 0, 0, "flux-2-klein-4b.safetensors", "qwen_3_4b.safetensors",
                                              "flux2", "flux2-vae.safetensors")
    g.note((0, 440), [320, 500], model_files(model, clip, vae) + """
Flux.2 Klein 4B (distilled: 4 steps, cfg 1), sampled as in ComfyUI's Klein template.

1. The first sampler makes the picture with Concept Attention recording the concepts.
2. *Concept Mask* picks `dog`; Grow Mask and Feather Mask widen and soften it.
3. Set Latent Noise Mask limits the second sampler to that region: it paints what the second prompt asks
   for (a cat) and keeps the rest of the picture.

Klein 9B: `flux-2-klein-9b-fp8.safetensors` with the `qwen_3_8b_fp8mixed.safetensors` text encoder.
""")
    ca = g.add("ConceptAttentionPatch", (400, 0), {"concepts": DOG_CONCEPTS}, size=[400, 250])
    g.link(model, 0, ca, "model")
    g.link(clip, 0, ca, "clip")
    enc = g.add("CLIPTextEncode", (400, 320), {"text": DOG_PROMPT}, size=[400, 160], title="Prompt",
                color=POSITIVE_COLOR)
    g.link(clip, 0, enc, "clip")
    neg = g.add("ConditioningZeroOut", (400, 530), size=[400, 26])
    g.link(enc, 0, neg, "conditioning")
    latent = g.add("EmptyFlux2LatentImage", (400, 620), {"width": 1024, "height": 1024, "batch_size": 1},
                   size=[400, 106])
    sampler = g.add("KSamplerSelect", (400, 790), {"sampler_name": "euler"}, size=[400, 58])
    sigmas = g.add("Flux2Scheduler", (400, 910), {"steps": 4, "width": 1024, "height": 1024}, size=[400, 106])
    picture = custom_sampler(g, 860, 0, ca, enc, neg, latent, sampler, sigmas, 42, "Sampler (picture)")
    dec = g.add("VAEDecode", (860, 470), size=[320, 46])
    g.link(picture[-1], "output", dec, "samples")
    g.link(vae, 0, dec, "vae")
    masks = g.add("ConceptAttentionMasks", (860, 580), size=[320, 118])
    g.link(ca, "concept_attention", masks, "concept_attention")
    g.link(picture[-1], "output", masks, "latent")
    g.link(dec, 0, masks, "image")
    first = image_out(g, "PreviewImage", (860, 760), title="Picture", size=(320, 300))
    g.link(dec, 0, first, "images")

    cm = g.add("ConceptAttentionSelectMask", (1240, 0), {"concept": "dog", "mode": "argmax", "threshold": 0.5},
               size=[320, 130])
    g.link(masks, "concept_maps", cm, "concept_maps")
    grow = g.add("GrowMask", (1240, 190), {"expand": 24, "tapered_corners": True}, size=[320, 82])
    g.link(cm, 0, grow, "mask")
    feather = g.add("FeatherMask", (1240, 330), {"left": 24, "top": 24, "right": 24, "bottom": 24},
                    size=[320, 130])
    g.link(grow, 0, feather, "mask")
    noise_mask = g.add("SetLatentNoiseMask", (1240, 520), size=[320, 46])
    g.link(picture[-1], "output", noise_mask, "samples")
    g.link(feather, 0, noise_mask, "mask")
    mask_view = image_out(g, "MaskPreview", (1240, 640), title="Inpaint mask", size=(320, 360))
    g.link(feather, 0, mask_view, "mask")

    enc2 = g.add("CLIPTextEncode", (1620, 0), {"text": DOG_PROMPT.replace("corgi dog", "tabby cat")},
                 size=[400, 160], title="Prompt for the masked region", color=POSITIVE_COLOR)
    g.link(clip, 0, enc2, "clip")
    neg2 = g.add("ConditioningZeroOut", (1620, 210), size=[400, 26])
    g.link(enc2, 0, neg2, "conditioning")
    inpaint = custom_sampler(g, 1620, 300, model, enc2, neg2, noise_mask, sampler, sigmas, 7, "Sampler (inpaint)")
    dec2 = g.add("VAEDecode", (1620, 770), size=[320, 46])
    g.link(inpaint[-1], "output", dec2, "samples")
    g.link(vae, 0, dec2, "vae")
    save = image_out(g, "SaveImage", (2080, 0), prefix="concept_attention/klein_inpainted")
    g.link(dec2, 0, save, "images")
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    g.group("1. Picture with Concept Attention", [ca, enc, neg, latent, sampler, sigmas, *picture, dec, masks,
                                                  first], GROUP_COLORS["generate"])
    g.group("2. Mask of one concept", [cm, grow, feather, noise_mask, mask_view], GROUP_COLORS["concepts"])
    g.group("3. Inpaint the region", [enc2, neg2, *inpaint, dec2], GROUP_COLORS["edit"])
    return g


def z_image_cut_out() -> Graph:
    g = Graph("Z-Image Turbo - cut out a concept")
    model, clip, vae = single_encoder_loaders(g, 0, 0, "z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors",
                                              "lumina2", "ae.safetensors")
    g.note((0, 440), [320, 320], model_files(model, clip, vae) + """
Z-Image Turbo (8 steps, cfg 1, res_multistep), sampled as in ComfyUI's Z-Image Turbo template.

1. KSampler makes the picture while Concept Attention records the concepts.
2. Load the background to paste onto; it is scaled to the picture's size.
3. *Concept Mask* picks `dog`, Feather Mask softens its edge and Image Composite Masked pastes the dog
   from the picture onto the background.
""")
    shift = g.add("ModelSamplingAuraFlow", (400, 0), {"shift": 3.0}, size=[400, 58])
    g.link(model, 0, shift, "model")
    ca = g.add("ConceptAttentionPatch", (400, 110), {"concepts": DOG_CONCEPTS}, size=[400, 250])
    g.link(shift, 0, ca, "model")
    g.link(clip, 0, ca, "clip")
    enc = g.add("CLIPTextEncode", (400, 420), {"text": DOG_PROMPT}, size=[400, 160], title="Prompt",
                color=POSITIVE_COLOR)
    g.link(clip, 0, enc, "clip")
    neg = g.add("ConditioningZeroOut", (400, 630), size=[400, 26])
    g.link(enc, 0, neg, "conditioning")
    latent = g.add("EmptySD3LatentImage", (400, 720), {"width": 1024, "height": 1024, "batch_size": 1},
                   size=[400, 106])
    ks = ksampler(g, 860, 0, ca, enc, neg, latent, steps=8, sampler="res_multistep")
    dec = g.add("VAEDecode", (860, 320), size=[320, 46])
    g.link(ks, 0, dec, "samples")
    g.link(vae, 0, dec, "vae")
    masks = g.add("ConceptAttentionMasks", (860, 430), size=[320, 118])
    g.link(ca, "concept_attention", masks, "concept_attention")
    g.link(ks, 0, masks, "latent")
    g.link(dec, 0, masks, "image")
    seg = image_out(g, "PreviewImage", (860, 610), title="Segmentation", size=(320, 320))
    g.link(masks, "segmentation", seg, "images")

    background = g.add("LoadImage", (1240, 0), {"image": "example.png"}, size=[320, 380], title="Background image")
    scaled = g.add("ImageScale", (1240, 440), {"upscale_method": "lanczos", "width": 1024, "height": 1024,
                                               "crop": "center"}, size=[320, 154])
    g.link(background, 0, scaled, "image")

    cm = g.add("ConceptAttentionSelectMask", (1620, 0), {"concept": "dog", "mode": "argmax", "threshold": 0.5},
               size=[320, 130])
    g.link(masks, "concept_maps", cm, "concept_maps")
    feather = g.add("FeatherMask", (1620, 190), {"left": 8, "top": 8, "right": 8, "bottom": 8}, size=[320, 130])
    g.link(cm, 0, feather, "mask")
    comp = g.add("ImageCompositeMasked", (1620, 380), {"x": 0, "y": 0, "resize_source": False}, size=[320, 150])
    g.link(scaled, 0, comp, "destination")
    g.link(dec, 0, comp, "source")
    g.link(feather, 0, comp, "mask")
    mask_view = image_out(g, "MaskPreview", (1620, 590), title="Cut-out mask", size=(320, 320))
    g.link(feather, 0, mask_view, "mask")
    save = image_out(g, "SaveImage", (2000, 0), prefix="concept_attention/z_image_composite")
    g.link(comp, 0, save, "images")
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    g.group("1. Picture with Concept Attention", [shift, ca, enc, neg, latent, ks, dec, masks, seg],
            GROUP_COLORS["generate"])
    g.group("2. Background", [background, scaled], GROUP_COLORS["output"])
    g.group("3. Cut out the concept", [cm, feather, comp, mask_view], GROUP_COLORS["concepts"])
    return g


def krea2_inpaint_image() -> Graph:
    g = Graph("Krea 2 - inpaint an existing image")
    model, clip, vae = single_encoder_loaders(g, 0, 0, "krea2_turbo_fp8_scaled.safetensors",
                                              "qwen3vl_4b_fp8_scaled.safetensors", "krea2",
                                              "qwen_image_vae.safetensors")
    image = g.add("LoadImage", (0, 470), {"image": "example.png"}, size=[320, 380])
    g.note((0, 930), [320, 320], model_files(model, clip, vae) + """
Krea 2 Turbo (8 steps, cfg 1), from Comfy-Org's Krea-2 files.

1. The image is scaled to about one megapixel and encoded once; *Concept Attention from Image* maps
   that LATENT (the image only draws the previews).
2. *Concept Mask* picks `dress`; Grow Mask and Feather Mask widen and soften it.
3. Set Latent Noise Mask limits KSampler to that region: it paints what the prompt asks for (a blue
   denim dress) and keeps the rest of the picture.
""")
    scaled = g.add("ImageScaleToTotalPixels", (400, 0), {"upscale_method": "lanczos", "megapixels": 1.0,
                                                         "resolution_steps": 16}, size=[400, 130])
    g.link(image, 0, scaled, "image")
    latent = g.add("VAEEncode", (400, 190), size=[400, 46])
    g.link(scaled, 0, latent, "pixels")
    g.link(vae, 0, latent, "vae")
    fi = g.add("ConceptAttentionFromImage", (400, 300),
               {"concepts": "girl, hair, dress, grass, sky", "caption": DRAWING_CAPTION, "noise_level": 0.5,
                "samples": 1, "seed": 0}, size=[400, 420])
    for src, name in ((model, "model"), (clip, "clip"), (latent, "latent"), (scaled, "image")):
        g.link(src, 0, fi, name)
    seg = image_out(g, "PreviewImage", (400, 790), title="Segmentation", size=(400, 330))
    g.link(fi, "segmentation", seg, "images")

    cm = g.add("ConceptAttentionSelectMask", (860, 0), {"concept": "dress", "mode": "argmax", "threshold": 0.5},
               size=[320, 130])
    g.link(fi, "concept_maps", cm, "concept_maps")
    grow = g.add("GrowMask", (860, 190), {"expand": 16, "tapered_corners": True}, size=[320, 82])
    g.link(cm, 0, grow, "mask")
    feather = g.add("FeatherMask", (860, 330), {"left": 16, "top": 16, "right": 16, "bottom": 16},
                    size=[320, 130])
    g.link(grow, 0, feather, "mask")
    noise_mask = g.add("SetLatentNoiseMask", (860, 520), size=[320, 46])
    g.link(latent, 0, noise_mask, "samples")
    g.link(feather, 0, noise_mask, "mask")
    mask_view = image_out(g, "MaskPreview", (860, 640), title="Inpaint mask", size=(320, 360))
    g.link(feather, 0, mask_view, "mask")

    enc = g.add("CLIPTextEncode", (1240, 0), {"text": DRAWING_CAPTION.replace("a pink dress", "a blue denim dress")},
                size=[400, 160], title="Prompt for the masked region", color=POSITIVE_COLOR)
    g.link(clip, 0, enc, "clip")
    neg = g.add("ConditioningZeroOut", (1240, 210), size=[400, 26])
    g.link(enc, 0, neg, "conditioning")
    ks = ksampler(g, 1240, 300, model, enc, neg, noise_mask, steps=8, seed=7)
    dec = g.add("VAEDecode", (1240, 620), size=[400, 46])
    g.link(ks, 0, dec, "samples")
    g.link(vae, 0, dec, "vae")
    save = image_out(g, "SaveImage", (1700, 0), prefix="concept_attention/krea2_inpainted")
    g.link(dec, 0, save, "images")
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    g.group("1. Map the image", [scaled, latent, fi, seg], GROUP_COLORS["generate"])
    g.group("2. Mask of one concept", [cm, grow, feather, noise_mask, mask_view], GROUP_COLORS["concepts"])
    g.group("3. Inpaint the region", [enc, neg, ks, dec], GROUP_COLORS["edit"])
    return g


def per_frame_cut_out(g: Graph, x, masks, frames, background, concept):
    """Concept Mask (the mask of `concept` in every frame), Feather Mask, Invert Mask and Image Composite Masked:
    the background outside the concept, frame by frame, over the decoded `frames`; and a preview of the masks.
    Returns the five nodes (the composite second to last)."""
    cm = g.add("ConceptAttentionSelectMask", (x, 0), {"concept": concept, "mode": "argmax", "threshold": 0.5},
               size=[320, 130])
    g.link(masks, "concept_maps", cm, "concept_maps")
    feather = g.add("FeatherMask", (x, 190), {"left": 8, "top": 8, "right": 8, "bottom": 8}, size=[320, 130])
    g.link(cm, 0, feather, "mask")
    outside = g.add("InvertMask", (x, 380), size=[320, 26])
    g.link(feather, 0, outside, "mask")
    comp = g.add("ImageCompositeMasked", (x, 470), {"x": 0, "y": 0, "resize_source": False}, size=[320, 150])
    g.link(frames, 0, comp, "destination")
    g.link(background, 0, comp, "source")
    g.link(outside, 0, comp, "mask")
    mask_view = image_out(g, "MaskPreview", (x, 680), title=f"Mask: {concept} (per frame)", size=(320, 300))
    g.link(feather, 0, mask_view, "mask")
    return [cm, feather, outside, comp, mask_view]


def save_videos(g: Graph, x, videos):
    """Create Video (24 fps) and Save Video for each (frames node, title, filename prefix), one under another."""
    for y, (frames, title, prefix) in zip((0, 560), videos):
        video = g.add("CreateVideo", (x, y), {"fps": 24.0}, size=[380, 82])
        g.link(frames, 0, video, "images")
        save = g.add("SaveVideo", (x, y + 140), {"filename_prefix": prefix}, size=[380, 340], title=title)
        g.link(video, 0, save, "video")


def hunyuan_video_cut_out() -> Graph:
    g = Graph("HunyuanVideo 1.5 - video cut-out")
    model = g.add("UNETLoader", (0, 0), {"unet_name": "hunyuanvideo1.5_720p_t2v_fp16.safetensors",
                                         "weight_dtype": "default"}, size=[320, 82])
    clip = g.add("DualCLIPLoader", (0, 140), {"clip_name1": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                                              "clip_name2": "byt5_small_glyphxl_fp16.safetensors",
                                              "type": "hunyuan_video_15", "device": "default"}, size=[320, 130])
    vae = g.add("VAELoader", (0, 330), {"vae_name": "hunyuanvideo15_vae_fp16.safetensors"}, size=[320, 58])
    g.note((0, 460), [320, 420], model_files(model, clip, vae) + """
HunyuanVideo 1.5 720p text-to-video (20 steps, cfg 6), sampled as in ComfyUI's template.

1. The sampler makes the video while Concept Attention records the concepts; *Concept Attention Masks*
   gives one mask per concept per decoded frame.
2. Load the background; it is scaled to the video's size.
3. *Concept Mask* picks `dog` in every frame; Image Composite Masked keeps the video's pixels inside the
   mask and the background outside, frame by frame.

Keep the background's size equal to the video's (width and height of the latent node).
""")
    shift = g.add("ModelSamplingSD3", (400, 0), {"shift": 7.0}, size=[400, 58])
    g.link(model, 0, shift, "model")
    ca = g.add("ConceptAttentionPatch", (400, 110), {"concepts": "dog, ball, grass, sky"}, size=[400, 250])
    g.link(shift, 0, ca, "model")
    g.link(clip, 0, ca, "clip")
    enc = g.add("CLIPTextEncode", (400, 420), {"text": "a corgi dog chasing a red ball across the grass in a sunny "
                                                       "park, blue sky, the camera follows the dog"},
                size=[400, 160], title="Prompt", color=POSITIVE_COLOR)
    g.link(clip, 0, enc, "clip")
    neg = g.add("CLIPTextEncode", (400, 640), {"text": ""}, size=[400, 120], title="Negative Prompt",
                color=NEGATIVE_COLOR)
    g.link(clip, 0, neg, "clip")
    latent = g.add("EmptyHunyuanVideo15Latent", (400, 820), {"width": 1280, "height": 720, "length": 121,
                                                              "batch_size": 1}, size=[400, 130])
    sampler = g.add("KSamplerSelect", (860, 0), {"sampler_name": "euler"}, size=[320, 58])
    sigmas = g.add("BasicScheduler", (860, 110), {"scheduler": "simple", "steps": 20, "denoise": 1.0},
                   size=[320, 106])
    g.link(ca, 0, sigmas, "model")
    video = custom_sampler(g, 860, 270, ca, enc, neg, latent, sampler, sigmas, 42, "Sampler (video)", cfg=6.0)
    dec = g.add("VAEDecode", (860, 740), size=[320, 46])
    g.link(video[-1], "output", dec, "samples")
    g.link(vae, 0, dec, "vae")
    masks = g.add("ConceptAttentionMasks", (860, 840), size=[320, 118])
    g.link(ca, "concept_attention", masks, "concept_attention")
    g.link(video[-1], "output", masks, "latent")
    g.link(dec, 0, masks, "image")

    background = g.add("LoadImage", (1240, 0), {"image": "example.png"}, size=[320, 380], title="Background image")
    scaled = g.add("ImageScale", (1240, 440), {"upscale_method": "lanczos", "width": 1280, "height": 720,
                                               "crop": "center"}, size=[320, 154])
    g.link(background, 0, scaled, "image")

    cut_out = per_frame_cut_out(g, 1620, masks, dec, scaled, "dog")
    save_videos(g, 2000, [(cut_out[-2], "Cut-out video", "concept_attention/hunyuan_video_cutout"),
                          (dec, "Video", "concept_attention/hunyuan_video")])
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    g.group("1. Video with Concept Attention", [shift, ca, enc, neg, latent, sampler, sigmas, *video, dec, masks],
            GROUP_COLORS["generate"])
    g.group("2. Background", [background, scaled], GROUP_COLORS["output"])
    g.group("3. Cut out, frame by frame", cut_out, GROUP_COLORS["concepts"])
    return g


# The negative prompt of ComfyUI's Wan 2.2 templates (Wan's own), in English: the template's is Chinese, which
# umT5 reads as well, but which many canvases draw as empty boxes without a CJK font.
WAN_NEGATIVE = ("garish colors, overexposed, static, blurred details, subtitles, style, artwork, painting, still "
                "picture, overall gray, worst quality, low quality, JPEG artifacts, ugly, mutilated, extra fingers, "
                "poorly drawn hands, poorly drawn face, deformed, disfigured, malformed limbs, fused fingers, "
                "motionless frame, cluttered background, three legs, many people in the background, walking "
                "backwards")


def wan22_per_frame_masks() -> Graph:
    g = Graph("Wan 2.2 - per-frame masks")
    model, clip, vae = single_encoder_loaders(g, 0, 0, "wan2.2_ti2v_5B_fp16.safetensors",
                                              "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan",
                                              "wan2.2_vae.safetensors")
    g.note((0, 440), [320, 560], model_files(model, clip, vae) + """
Wan 2.2 5B text-to-video (20 steps, cfg 5, uni_pc), sampled as in ComfyUI's Wan 2.2 5B template.

**Wan never updates the prompt, so this is the cross-attention baseline, not ConceptAttention proper**: the
masks come from the video tokens' cross-attention to each concept (space `auto` picks it on Wan).

1. KSampler makes the video while Concept Attention records the concepts; *Concept Attention Masks* gives
   one mask per concept per decoded frame.
2. Load the background; it is scaled to the video's size.
3. *Concept Mask* picks `dog` in every frame; Image Composite Masked keeps the video's pixels inside the
   mask and the background outside, frame by frame.

Keep the background's size equal to the video's (width and height of the latent node).
""")
    shift = g.add("ModelSamplingSD3", (400, 0), {"shift": 8.0}, size=[400, 58])
    g.link(model, 0, shift, "model")
    ca = g.add("ConceptAttentionPatch", (400, 110), {"concepts": "dog, ball, grass, sky"}, size=[400, 250])
    g.link(shift, 0, ca, "model")
    g.link(clip, 0, ca, "clip")
    enc = g.add("CLIPTextEncode", (400, 420), {"text": "a corgi dog chasing a red ball across the grass in a sunny "
                                                       "park, blue sky, the camera follows the dog"},
                size=[400, 160], title="Prompt", color=POSITIVE_COLOR)
    g.link(clip, 0, enc, "clip")
    neg = g.add("CLIPTextEncode", (400, 640), {"text": WAN_NEGATIVE}, size=[400, 180], title="Negative Prompt",
                color=NEGATIVE_COLOR)
    g.link(clip, 0, neg, "clip")
    latent = g.add("Wan22ImageToVideoLatent", (400, 880), {"width": 1280, "height": 704, "length": 121,
                                                            "batch_size": 1}, size=[400, 150])
    g.link(vae, 0, latent, "vae")
    ks = ksampler(g, 860, 0, ca, enc, neg, latent, steps=20, cfg=5.0, sampler="uni_pc")
    dec = g.add("VAEDecode", (860, 320), size=[320, 46])
    g.link(ks, 0, dec, "samples")
    g.link(vae, 0, dec, "vae")
    masks = g.add("ConceptAttentionMasks", (860, 430), size=[320, 118])
    g.link(ca, "concept_attention", masks, "concept_attention")
    g.link(ks, 0, masks, "latent")
    g.link(dec, 0, masks, "image")
    seg = image_out(g, "PreviewImage", (860, 610), title="Segmentation (per frame)", size=(320, 320))
    g.link(masks, "segmentation", seg, "images")

    background = g.add("LoadImage", (1240, 0), {"image": "example.png"}, size=[320, 380], title="Background image")
    scaled = g.add("ImageScale", (1240, 440), {"upscale_method": "lanczos", "width": 1280, "height": 704,
                                               "crop": "center"}, size=[320, 154])
    g.link(background, 0, scaled, "image")
    cut_out = per_frame_cut_out(g, 1620, masks, dec, scaled, "dog")
    save_videos(g, 2000, [(cut_out[-2], "Cut-out video", "concept_attention/wan22_video_cutout"),
                          (dec, "Video", "concept_attention/wan22_video")])
    g.group("Models", [model, clip, vae], GROUP_COLORS["models"])
    g.group("1. Video with Concept Attention (cross-attention baseline)",
            [shift, ca, enc, neg, latent, ks, dec, masks, seg], GROUP_COLORS["generate"])
    g.group("2. Background", [background, scaled], GROUP_COLORS["output"])
    g.group("3. Cut out, frame by frame", cut_out, GROUP_COLORS["concepts"])
    return g


WORKFLOWS = [flux_generation_masks, masks_from_image, attention_guided_inpainting, concept_compositing,
             sd35_generation_masks, kontext_concept_edit, chroma_masks_from_image, qwen_image_edit_concept,
             klein_inpainting, z_image_cut_out, krea2_inpaint_image, hunyuan_video_cut_out,
             wan22_per_frame_masks]


def main() -> None:
    for make in WORKFLOWS:
        graph = make()
        data = graph.to_json()
        problems = wt.check_layout(data)
        if problems:
            raise SystemExit(f"{graph.name}: layout problems:\n" + "\n".join(problems))
        path = wt.WORKFLOWS / f"{graph.name}.json"
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(wt.REPO)} ({len(graph.nodes)} nodes, {len(graph.links)} links)")


if __name__ == "__main__":
    main()
