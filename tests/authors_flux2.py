"""The paper authors' own Flux.2 ConceptAttention code, loaded at run time from a checkout of their repository
(helblazer811/ConceptAttention) so that a test can compare against it. Nothing of it is stored in this repository.

Their model (`concept_attention/flux2/dit.py`, `dit_block.py`, and BFL's `flux2/model.py` under it) needs only
torch and einops and runs on the CPU. Their pipeline module also imports matplotlib, the Mistral text encoder
and the autoencoder, so only its two pieces the maps need are taken from it: the denoising loop
(`ConceptAttentionFlux2Pipeline._denoise`) and the aggregation (`compute_heatmaps_from_attention_dicts`).
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(os.environ.get("CONCEPT_ATTENTION_AUTHORS_REPO", "/work/.mirror/helblazer811+ConceptAttention/repo"))
PACKAGE = "authors_flux2_code"
MODEL_FILES = {  # file in the loaded package -> path in their repository
    "model.py": "concept_attention/flux2/flux2/src/flux2/model.py",
    "dit_block.py": "concept_attention/flux2/dit_block.py",
    "dit.py": "concept_attention/flux2/dit.py",
}
PIPELINE = "concept_attention/flux2/pipeline.py"
# Their absolute imports, pointed at the loaded package.
IMPORTS = {"from concept_attention.flux2.flux2.src.flux2.model import": "from .model import",
           "from concept_attention.flux2.dit_block import": "from .dit_block import"}


def available() -> str | None:
    """None if their code can be loaded, else why not (one line)."""
    try:
        _show(MODEL_FILES["dit.py"])
    except (OSError, subprocess.CalledProcessError):
        return (f"the authors' repository is not at {REPO} (set CONCEPT_ATTENTION_AUTHORS_REPO to a checkout or "
                f"bare clone of helblazer811/ConceptAttention)")
    return None


def _show(path: str) -> str:
    if (REPO / path).is_file():  # a checkout
        return (REPO / path).read_text()
    return subprocess.run(["git", "-C", str(REPO), "show", f"HEAD:{path}"], check=True, capture_output=True,
                          text=True).stdout  # a bare clone


def load(tmp_dir: Path) -> SimpleNamespace:
    """Their `ModifiedFlux2`, `Flux2Params`, `_denoise` and `compute_heatmaps_from_attention_dicts`."""
    package = tmp_dir / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, path in MODEL_FILES.items():
        source = _show(path)
        for old, new in IMPORTS.items():
            source = source.replace(old, new)
        (package / name).write_text(source)
    sys.path.insert(0, str(tmp_dir))
    try:
        dit = importlib.import_module(f"{PACKAGE}.dit")
        model = importlib.import_module(f"{PACKAGE}.model")
    finally:
        sys.path.remove(str(tmp_dir))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
    functions = _pipeline_functions(_show(PIPELINE))
    return SimpleNamespace(ModifiedFlux2=dit.ModifiedFlux2, Flux2Params=model.Flux2Params, **functions)


def _pipeline_functions(source: str) -> dict:
    import einops
    import tqdm

    tree = ast.parse(source)
    wanted = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "compute_heatmaps_from_attention_dicts":
            wanted.append(node)
        if isinstance(node, ast.ClassDef) and node.name == "ConceptAttentionFlux2Pipeline":
            wanted += [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "_denoise"]
    if len(wanted) != 2:
        raise RuntimeError(f"{PIPELINE} no longer defines _denoise and compute_heatmaps_from_attention_dicts")
    namespace = {"torch": torch, "einops": einops, "Tensor": torch.Tensor, "tqdm": tqdm.tqdm}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), PIPELINE, "exec"), namespace)
    return {"denoise": namespace["_denoise"], "heatmaps": namespace["compute_heatmaps_from_attention_dicts"]}


def model_from_comfy(dm, authors) -> torch.nn.Module:
    """Their ModifiedFlux2 with the weights of ComfyUI's Flux.2 `dm` (BFL's names; RMSNorm weights are 'scale')."""
    p = dm.params
    params = authors.Flux2Params(in_channels=p.in_channels, context_in_dim=p.context_in_dim,
                                 hidden_size=p.hidden_size, num_heads=p.num_heads, depth=p.depth,
                                 depth_single_blocks=p.depth_single_blocks, axes_dim=list(p.axes_dim),
                                 theta=p.theta, mlp_ratio=p.mlp_ratio)
    theirs = authors.ModifiedFlux2(params)
    state = {k.replace("_norm.weight", "_norm.scale"): v for k, v in dm.state_dict().items()}
    theirs.load_state_dict(state, strict=True)
    return theirs.float().eval()
