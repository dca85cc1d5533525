"""Every example workflow runs end to end through ComfyUI's own executor (`execution.PromptExecutor`).

The model files are not available here, so the four loader node types are swapped for subclasses that return
tiny random models built through ComfyUI's own classes (Flux / SD3.5-style MMDiT, their CLIP, a small
AutoencoderKL); every other node is ComfyUI's or the pack's own, wired exactly as in the workflow file. To stay
fast on a CPU the prompt is shrunk: 64 px images and latents, 2 sampling steps, the tiny models' blocks, and
Kontext's preferred resolution 64x64. Asserts that every output node of every workflow produced its images.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

import host
import workflow_tools as wt

pytestmark = pytest.mark.host

FILES = wt.workflow_files()
IDS = [p.stem for p in FILES]


class FakeServer:
    """What the executor needs of PromptServer: no client, messages dropped."""
    client_id = None
    last_node_id = None

    def send_sync(self, event, data, sid=None):
        pass

    def queue_updated(self):
        pass


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    nodes = wt.load_comfy_nodes()
    loaded = {}

    def once(key, make):
        if key not in loaded:
            loaded[key] = make()
        return loaded[key]

    class TinyUNETLoader(nodes.UNETLoader):
        def load_unet(self, unet_name, weight_dtype):
            return (once("flux", lambda: host.tiny_flux(seed=0)),)

    class TinyDualCLIPLoader(nodes.DualCLIPLoader):
        def load_clip(self, clip_name1, clip_name2, type, device="default"):
            return (once("flux_clip", lambda: host.tiny_flux_clip(seed=1)),)

    class TinyVAELoader(nodes.VAELoader):
        def load_vae(self, vae_name):
            return (once("vae", host.tiny_vae),)

    class TinyCheckpointLoader(nodes.CheckpointLoaderSimple):
        def load_checkpoint(self, ckpt_name):
            return (once("sd3", lambda: host.tiny_sd3(seed=0)), once("sd3_clip", lambda: host.tiny_sd3_clip(seed=2)),
                    once("vae", host.tiny_vae))

    kontext_module = sys.modules[nodes.NODE_CLASS_MAPPINGS["FluxKontextImageScale"].__module__]
    with wt.comfy_folders(tmp_path_factory.mktemp("comfy-run")) as root, pytest.MonkeyPatch.context() as mp:
        for name, cls in (("UNETLoader", TinyUNETLoader), ("DualCLIPLoader", TinyDualCLIPLoader),
                          ("VAELoader", TinyVAELoader), ("CheckpointLoaderSimple", TinyCheckpointLoader)):
            mp.setitem(nodes.NODE_CLASS_MAPPINGS, name, cls)
        mp.setattr(kontext_module, "PREFERRED_KONTEXT_RESOLUTIONS", [(64, 64)])
        yield nodes, root


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_workflow_runs(comfy, path):
    import execution

    nodes, root = comfy
    workflow = json.loads(path.read_text(encoding="utf-8"))
    prompt = wt.ui_to_api(workflow, nodes.NODE_CLASS_MAPPINGS)
    for node in prompt.values():
        node["inputs"].update(wt.SHRINK.get(node["class_type"], {}))
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("run", prompt, None))
    assert valid and not node_errors, (error, node_errors)

    executor = execution.PromptExecutor(FakeServer(), cache_type=execution.CacheType.CLASSIC,
                                        cache_args={"ram": 0, "ram_inactive": 0})
    executor.execute(prompt, f"ca-run-{path.stem}", {}, outputs)
    failures = [data for event, data in executor.status_messages if event == "execution_error"]
    assert executor.success and not failures, json.dumps(failures, indent=1, default=str)[:4000]

    produced = executor.history_result["outputs"]
    assert set(produced) == set(outputs), f"outputs without results: {set(outputs) - set(produced)}"
    for node_id in outputs:
        images = produced[node_id].get("images")
        assert images, f"{prompt[node_id]['class_type']} #{node_id} produced no images"
        if prompt[node_id]["class_type"] == "SaveImage":
            for image in images:
                assert (root / "output" / image["subfolder"] / image["filename"]).is_file()
