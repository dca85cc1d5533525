"""Prompts through a real ComfyUI server (`main.py --cpu` on 127.0.0.1) with the pack and the tiny test models
(tests/tiny_loaders), as a user's browser would queue them.

What the user meets: a node error reaches the UI with a short exception type and its whole message (in
/history and on the websocket); typed text the pack cannot read is refused when the prompt is queued (HTTP 400,
node_errors naming the input), before any model loads. The long run: 100 prompts (alternating concept lists,
some bad) each give their masks or their clear error while the server's memory stays flat; an interrupted run
leaves no maps behind; two prompts with different concept lists queued back to back each get their own maps.

Each prompt is the example workflow "Flux - masks while generating" as the frontend queues it
(workflow_tools.ui_to_api), shrunk for the tiny models (workflow_tools.SHRINK), its loaders swapped for the
tiny ones (comfy_server.TINY_LOADERS), plus MaskToImage -> PreviewImage on the masks so that the test reads
them back through /view.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import re
import time
import urllib.parse
import uuid

import numpy as np
import pytest

import comfy_server
import workflow_tools as wt

pytestmark = [pytest.mark.host, pytest.mark.slow]

WORKFLOW = wt.WORKFLOWS / "Flux - masks while generating.json"
MASK_PREVIEW = "masks_preview"
TWO, THREE = "cat, sofa", "dog,\ngrass,\nsky"  # the second as people type lists: commas and new lines
BLOCKS_OUT_OF_RANGE = re.compile(r"Block index 5 is out of range for .+: it has 3 joint \(double\) blocks, so "
                                 r"valid indices are 0-2\.")
RUN_TIMEOUT_S = 120
SLOW_RUN_STEPS = 60  # long enough to interrupt it while it samples


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy-run-server")
    comfy_server.prepare_base_dir(base, pack_source="symlink", tiny_loaders=True)
    with comfy_server.comfyui_server(base) as server:
        yield server


@pytest.fixture(scope="module")
def base_prompt(server):
    """The workflow's API prompt with tiny loaders, and the ids of the pack's nodes in it."""
    classes = comfy_server.object_info_classes(server.url)
    prompt = wt.ui_to_api(json.loads(WORKFLOW.read_text(encoding="utf-8")), classes)
    ids = {}
    for node_id, node in prompt.items():
        node["inputs"].update(wt.SHRINK.get(node["class_type"], {}))
        node["class_type"] = comfy_server.TINY_LOADERS.get(node["class_type"], node["class_type"])
        ids[node["class_type"]] = node_id
    prompt["masks_image"] = {"class_type": "MaskToImage", "inputs": {"mask": [ids["ConceptAttentionMasks"], 0]}}
    prompt[MASK_PREVIEW] = {"class_type": "PreviewImage", "inputs": {"images": ["masks_image", 0]}}
    return prompt, ids


def make_prompt(base_prompt, concepts: str, seed: int, sampler_steps: int = 2, **patch_inputs) -> dict:
    prompt, ids = base_prompt
    prompt = copy.deepcopy(prompt)
    prompt[ids["ConceptAttentionPatch"]]["inputs"].update(concepts=concepts, **patch_inputs)
    prompt[ids["KSampler"]]["inputs"].update(seed=seed, steps=sampler_steps)
    return prompt


# ---- talking to the server ----
def queue(server, prompt: dict) -> tuple[int, dict]:
    return comfy_server.post_json(server.url + "/prompt", {"prompt": prompt, "client_id": "ca-test"})


def wait_for(server, prompt_id: str, timeout: float = RUN_TIMEOUT_S) -> dict:
    """The prompt's /history entry once it has finished (successfully or not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = comfy_server.get_json(f"{server.url}/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None and entry["status"].get("status_str"):
            return entry
        time.sleep(0.05)
    raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s:\n{comfy_server.log_tail(server.log_path)}")


def run(server, prompt: dict) -> dict:
    status, body = queue(server, prompt)
    assert status == 200, body
    return wait_for(server, body["prompt_id"])


def masks_of(server, entry: dict) -> np.ndarray:
    """The masks the masks node gave, [N, H, W] uint8 (as the preview PNGs hold them)."""
    from PIL import Image

    assert entry["status"]["status_str"] == "success", execution_error(entry)
    images = []
    for image in entry["outputs"][MASK_PREVIEW]["images"]:
        query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
        png = comfy_server.get(f"{server.url}/view?{query}")
        images.append(np.asarray(Image.open(io.BytesIO(png)).convert("L")))
    return np.stack(images)


def execution_error(entry: dict) -> dict | None:
    errors = [data for event, data in entry["status"]["messages"] if event == "execution_error"]
    return errors[0] if errors else None


def watch(server, prompt: dict, *, interrupt_when_sampling: bool = False) -> tuple[str, list[dict]]:
    """Queue `prompt` as a websocket client, as the frontend does; returns its prompt id and the websocket
    messages about it until it ends. interrupt_when_sampling: POST /interrupt at the sampler's first step."""
    import aiohttp

    client_id = uuid.uuid4().hex

    async def session():
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"{server.url.replace('http', 'ws', 1)}/ws?clientId={client_id}") as ws:
            async with http.post(server.url + "/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                body = await r.json()
                assert r.status == 200, body
            prompt_id, messages = body["prompt_id"], []
            async with asyncio.timeout(RUN_TIMEOUT_S):
                async for frame in ws:
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        continue  # binary frames: sampler previews
                    message = json.loads(frame.data)
                    if message["data"].get("prompt_id") != prompt_id:
                        continue
                    messages.append(message)
                    if interrupt_when_sampling and message["type"] == "progress" and message["data"]["value"] == 1:
                        async with http.post(server.url + "/interrupt", json={"prompt_id": prompt_id}) as r:
                            assert r.status == 200
                    if message["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                        return prompt_id, messages
            raise AssertionError(f"the websocket closed before prompt {prompt_id} ended")

    return asyncio.run(session())


def rss_bytes(server) -> int:
    import psutil

    return psutil.Process(server.pid).memory_info().rss


# ---- what the user meets ----
def test_node_errors_reach_the_ui_with_a_short_type_and_the_whole_message(server, base_prompt):
    prompt_id, messages = watch(server, make_prompt(base_prompt, TWO, seed=1, blocks="1, 5-7"))
    sent = [m["data"] for m in messages if m["type"] == "execution_error"]
    assert len(sent) == 1, messages
    stored = execution_error(wait_for(server, prompt_id))
    for error in (sent[0], stored):
        assert error["node_type"] == "ConceptAttentionPatch"
        assert error["exception_type"] == "ConceptAttentionError"  # what the popup shows before the message
        assert BLOCKS_OUT_OF_RANGE.fullmatch(error["exception_message"].strip()), error["exception_message"]


@pytest.mark.parametrize("name,value,message", [
    ("blocks", "18-15", "The blocks range '18-15' is reversed (from 18 down to 15): write the smaller index first, "
                        "'15-18'."),
    ("steps", "5-2", "The steps range '5-2' is reversed (from 5 down to 2): write the smaller index first, '2-5'. "
                     "Steps count from 0"),
    ("concepts", "dog, DOG", "Concepts 'dog' and 'DOG' (numbers 1 and 2) are the same concept: names are matched "
                             "ignoring case"),
])
def test_unreadable_text_is_refused_when_queued(server, base_prompt, name, value, message):
    prompt, ids = base_prompt
    bad = make_prompt(base_prompt, seed=2, **{"concepts": TWO, name: value})
    history_before = set(comfy_server.get_json(server.url + "/history"))
    status, body = queue(server, bad)
    assert status == 400, body
    errors = body["node_errors"][ids["ConceptAttentionPatch"]]["errors"]
    named = [e for e in errors if e["extra_info"]["input_name"] == name]
    assert named and named[0]["type"] == "custom_validation_failed", errors
    assert named[0]["details"].startswith(f"{name} - {message}"), named[0]["details"]
    assert set(comfy_server.get_json(server.url + "/history")) == history_before, "it must never have run"


def test_a_linked_concept_list_is_read_when_the_graph_runs(server, base_prompt):
    """Queue-time checks skip inputs fed by links (their value is not known yet); the run reads them."""
    _, ids = base_prompt
    for concepts, seed in ((THREE, 3), ("dog, DOG", 4)):
        prompt = make_prompt(base_prompt, TWO, seed=seed)
        prompt["concept_text"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": concepts}}
        prompt[ids["ConceptAttentionPatch"]]["inputs"]["concepts"] = ["concept_text", 0]
        entry = run(server, prompt)
        if concepts == THREE:
            assert masks_of(server, entry).shape == (3, 64, 64)
        else:
            error = execution_error(entry)
            assert error["exception_type"] == "ConceptAttentionError" and "same concept" in error["exception_message"]


# ---- the long run ----
def long_run_prompt(base_prompt, i: int) -> tuple[dict, str | None]:
    """Prompt number i of the long run and the problem it has (None: a good one)."""
    concepts = TWO if i % 2 else THREE
    if i % 10 == 3:
        return make_prompt(base_prompt, "sky, Sky", seed=i), "queue"  # refused when queued
    if i % 10 == 6:
        return make_prompt(base_prompt, concepts, seed=i, blocks="5-7"), "blocks"  # found when the model is known
    if i % 10 == 9:
        return make_prompt(base_prompt, concepts, seed=i, steps="7"), "steps"  # the run has steps 0-1
    return make_prompt(base_prompt, concepts, seed=i), None


def test_100_prompts_give_masks_or_clear_errors_and_memory_stays_flat(server, base_prompt, capsys):
    def run_batch(numbers):
        queued = []
        for i in numbers:
            prompt, problem = long_run_prompt(base_prompt, i)
            status, body = queue(server, prompt)
            if problem == "queue":
                assert status == 400 and "same concept" in json.dumps(body["node_errors"]), (i, body)
                continue
            assert status == 200, (i, body)
            queued.append((i, problem, body["prompt_id"]))
        for i, problem, prompt_id in queued:
            entry = wait_for(server, prompt_id)
            if problem is None:
                count = 2 if i % 2 else 3
                assert masks_of(server, entry).shape == (count, 64, 64), i
                continue
            error = execution_error(entry)
            assert error and error["exception_type"] == "ConceptAttentionError", (i, entry["status"])
            text = error["exception_message"]
            if problem == "blocks":
                assert BLOCKS_OUT_OF_RANGE.fullmatch(text.strip()), (i, text)
            else:
                assert error["node_type"] == "ConceptAttentionMasks" and "selected steps [7]" in text, (i, text)

    start = time.monotonic()
    run_batch(range(10))
    after_10 = rss_bytes(server)
    run_batch(range(10, 100))
    after_100 = rss_bytes(server)
    growth = after_100 / after_10 - 1
    with capsys.disabled():
        print(f"\nserver RSS after prompt 10: {after_10 / 2**20:.1f} MiB, after prompt 100: "
              f"{after_100 / 2**20:.1f} MiB ({growth:+.2%}); 100 prompts in {time.monotonic() - start:.1f}s")
    assert abs(growth) <= 0.05


def test_an_interrupted_run_leaves_no_maps(server, base_prompt):
    """The same prompt, interrupted while sampling and then queued again, shows the maps of an uninterrupted
    run (the patch node's handle is cached between the two, so a leftover of the interrupted run would show)."""
    prompt = make_prompt(base_prompt, THREE, seed=7, sampler_steps=SLOW_RUN_STEPS)
    # The reference: the same run under a patch node that is not cached (its blocks spelt differently).
    expected = masks_of(server, run(server, make_prompt(base_prompt, THREE, seed=7, sampler_steps=SLOW_RUN_STEPS,
                                                        blocks="1, 2")))

    prompt_id, messages = watch(server, prompt, interrupt_when_sampling=True)
    assert messages[-1]["type"] == "execution_interrupted", [m["type"] for m in messages]
    assert messages[-1]["data"]["node_type"] == "KSampler"
    entry = wait_for(server, prompt_id)
    assert MASK_PREVIEW not in entry["outputs"], "an interrupted run must give no maps"

    after = masks_of(server, run(server, prompt))
    assert np.array_equal(after, expected)
    assert after.std(axis=(1, 2)).min() > 2, "masks nearly flat: a mix-up of runs could pass unseen"


def test_back_to_back_prompts_each_show_their_own_maps(server, base_prompt):
    """Two concept lists on one loaded model, queued back to back, against each run alone."""
    alone = {concepts: masks_of(server, run(server, make_prompt(base_prompt, concepts, seed=11, blocks="1, 2")))
             for concepts in (TWO, THREE)}
    queued = [(concepts, queue(server, make_prompt(base_prompt, concepts, seed=11))) for concepts in (TWO, THREE)]
    for concepts, (status, body) in queued:
        assert status == 200, body
    for concepts, (_, body) in queued:
        got = masks_of(server, wait_for(server, body["prompt_id"]))
        assert np.array_equal(got, alone[concepts]), concepts
    assert not np.array_equal(alone[TWO], alone[THREE][:2]), "the two lists must give different maps"
