"""`python -m concept_attention.adapters` prints the README's supported-models table."""

from ..eval.comfy_host import setup

setup(cpu=True)

from . import supported_table  # noqa: E402  (needs ComfyUI on the path)

print(supported_table())
