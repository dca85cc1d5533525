"""Every example workflow runs end to end through ComfyUI's own executor (`execution.PromptExecutor`).

The model files are not available here, so the loader node types are swapped for subclasses that return, for
the files (and CLIP type) each names, a tiny random model of that family built through ComfyUI's own classes
(tests/tiny_workflow_models.py); every other node is ComfyUI's or the pack's own, wired exactly as in the
workflow file. To stay fast on a CPU the prompt is shrunk (workflow_tools.SHRINK): 64 px images and latents
(96 px where a node allows no less), 5 video frames, 2 sampling steps, the tiny models' blocks, and Kontext's
preferred resolution 64x64. Asserts that every output node of every workflow produced its images (and saved
its image and video files).
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

import tiny_workflow_models
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


def tiny_loader(nodes, node_type: str):
    """A subclass of the loader `node_type` that returns tiny_workflow_models' stand-in for the file it names."""
    base = nodes.NODE_CLASS_MAPPINGS[node_type]

    def load(self, **widgets):
        return tiny_workflow_models.tiny_model(node_type, widgets)

    return type(f"Tiny{base.__name__}", (base,), {base.FUNCTION: load})


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    nodes = wt.load_comfy_nodes()
    kontext_module = sys.modules[nodes.NODE_CLASS_MAPPINGS["FluxKontextImageScale"].__module__]
    with wt.comfy_folders(tmp_path_factory.mktemp("comfy-run")) as root, pytest.MonkeyPatch.context() as mp:
        for node_type in tiny_workflow_models.LOADERS:
            mp.setitem(nodes.NODE_CLASS_MAPPINGS, node_type, tiny_loader(nodes, node_type))
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
        if prompt[node_id]["class_type"] in ("SaveImage", "SaveVideo"):
            for image in images:
                assert (root / "output" / image["subfolder"] / image["filename"]).is_file()
