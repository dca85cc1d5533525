"""Host setup: the important tests run against a real ComfyUI (never a mock of its model code).

Without ComfyUI, every test that needs it is skipped and one loud line says so.
"""

import pytest

from host import find_comfyui, setup_comfyui

COMFYUI = find_comfyui()
if COMFYUI is not None:
    setup_comfyui(COMFYUI)


HOST_LINE = (f"ComfyUI host: {COMFYUI} -- host tests run" if COMFYUI is not None else
             "!!! ComfyUI NOT FOUND (set COMFYUI_PATH, or install the pack in ComfyUI/custom_nodes, or put "
             "ComfyUI in ~/ComfyUI): ALL HOST TESTS ARE SKIPPED !!!")


def pytest_report_header(config):
    return HOST_LINE


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(HOST_LINE)  # shown with -q too


def pytest_collection_modifyitems(config, items):
    if COMFYUI is not None:
        return
    skip = pytest.mark.skip(reason="ComfyUI not found; host tests need a real ComfyUI")
    for item in items:
        if "host" in item.keywords:
            item.add_marker(skip)


# ---- tiny models shared by the host tests (built once per session; attach() never mutates them) ----
@pytest.fixture(scope="session")
def flux():
    import host
    return host.tiny_flux(seed=0)


@pytest.fixture(scope="session")
def clip():
    """The tiny Flux text encoder pair (CLIP-L + T5)."""
    import host
    return host.tiny_flux_clip(seed=1)


@pytest.fixture(scope="session")
def concepts(clip):
    from concept_attention import encode_concepts
    return encode_concepts(clip, ["cat", "sofa", "window"])
