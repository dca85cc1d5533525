"""A test-only custom node pack for a real ComfyUI server (tests/comfy_server.py installs it): loaders that
give the suite's tiny random Flux, its text encoders and VAE (tests/host.py) in place of the model files the
example workflows name. They take no inputs; a prompt swaps a loader's class_type for one of these and keeps
its inputs, which ComfyUI then ignores."""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))

import host  # noqa: E402


def tiny_flux_clip():
    """The tiny Flux text encoders, T5 padded to 16 tokens instead of 256: prompts run several times faster."""
    clip = host.tiny_flux_clip(seed=1)
    clip.set_tokenizer_option("t5xxl_min_length", 16)
    return clip


def tiny_loader(return_type: str, build):
    class Loader:
        RETURN_TYPES = (return_type,)
        FUNCTION = "load"
        CATEGORY = "testing"

        @classmethod
        def INPUT_TYPES(cls):  # noqa: N802 (ComfyUI's name)
            return {"required": {}}

        def load(self):
            return (build(),)

    return Loader


NODE_CLASS_MAPPINGS = {
    "CATestTinyUNETLoader": tiny_loader("MODEL", lambda: host.tiny_flux(seed=0)),
    "CATestTinyDualCLIPLoader": tiny_loader("CLIP", tiny_flux_clip),
    "CATestTinyVAELoader": tiny_loader("VAE", host.tiny_vae),
}
