"""pyproject.toml as ComfyUI reads it (`comfy_config.config_parser.extract_node_configuration`, the parser
`nodes.load_custom_node` runs on every pack) and as the Comfy Registry specifies it.

Asserts that every field we write is one the parser understands (nothing silently dropped), that the parsed
values are what the file says, and the registry's rules for name, version, license, classifiers,
requires-comfyui and the icon (a square PNG of at most 400 px, committed at the path its URL names).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def raw():
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def parsed():
    import host

    host.setup_comfyui(host.find_comfyui())
    pytest.importorskip("pydantic_settings", reason="ComfyUI's pyproject parser needs pydantic-settings")
    from comfy_config import config_parser

    return config_parser.extract_node_configuration(str(REPO))


def aliases(model) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_every_field_is_understood(raw, parsed):
    from comfy_config.types import URLs, ComfyConfig, ProjectConfig

    project_keys = aliases(ProjectConfig) | {"classifiers", "urls"}
    assert set(raw["project"]) <= project_keys, f"[project] keys ComfyUI ignores: {set(raw['project']) - project_keys}"
    url_keys = aliases(URLs)
    assert set(raw["project"].get("urls", {})) <= url_keys, (
        f"[project.urls] keys ComfyUI ignores (it knows {sorted(url_keys)}): "
        f"{set(raw['project']['urls']) - url_keys}")
    comfy_keys = aliases(ComfyConfig) | {"requires-comfyui"}  # requires-comfyui is read by the parser itself
    assert set(raw["tool"]["comfy"]) <= comfy_keys, f"[tool.comfy] keys ComfyUI ignores: {set(raw['tool']['comfy']) - comfy_keys}"


def test_parsed_values(raw, parsed):
    project, comfy = parsed.project, parsed.tool_comfy
    assert project.name == raw["project"]["name"] == "comfyui-concept-attention"
    assert project.version == raw["project"]["version"]
    assert project.description == raw["project"]["description"] and project.description
    assert project.dependencies == raw["project"].get("dependencies", [])
    urls = raw["project"]["urls"]
    assert project.urls.repository == urls["Repository"] and project.urls.repository.startswith("https://github.com/")
    assert project.urls.issues == urls.get("Issues", "")
    assert comfy.publisher_id == raw["tool"]["comfy"]["PublisherId"] and comfy.publisher_id
    assert comfy.display_name == raw["tool"]["comfy"]["DisplayName"] and comfy.display_name
    assert comfy.icon == raw["tool"]["comfy"]["Icon"]
    assert comfy.web is None or (REPO / comfy.web).is_dir()
    for path in comfy.includes:
        assert (REPO / path).exists(), f"includes names a missing path {path}"


def test_registry_rules(raw, parsed):
    project = parsed.project
    # name: < 100 chars, letters/digits/-/_/., no consecutive specials, starts with a letter
    assert len(project.name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*", project.name)
    assert re.fullmatch(r"\d+\.\d+\.\d+", project.version), "the registry wants X.Y.Z"
    license_ = raw["project"].get("license")
    assert isinstance(license_, dict) and set(license_) <= {"file", "text"}, (
        "the registry wants license = { file = \"LICENSE\" } or { text = \"...\" }")
    if "file" in license_:
        assert (REPO / license_["file"]).is_file()
    assert project.license.text or project.license.file
    classifiers = raw["project"].get("classifiers", [])
    os_classifiers = [c for c in classifiers if c.startswith("Operating System :: ")]
    gpu_classifiers = [c for c in classifiers if c.startswith("Environment ::")]
    # The parser drops all OS (accelerator) classifiers when one of them is not a value it knows.
    assert len(project.supported_os) == len(os_classifiers)
    assert len(project.supported_accelerators) == len(gpu_classifiers)


def test_requires_comfyui(raw, parsed):
    from packaging.specifiers import SpecifierSet

    import host

    spec = parsed.project.supported_comfyui_version
    assert spec == raw["tool"]["comfy"]["requires-comfyui"]
    version_file = host.find_comfyui() / "comfyui_version.py"
    installed = re.search(r'__version__ = "([^"]+)"', version_file.read_text()).group(1)
    assert installed in SpecifierSet(spec), f"the ComfyUI tested here ({installed}) does not satisfy {spec}"


def test_icon(parsed):
    from PIL import Image

    icon = parsed.tool_comfy.icon
    repo = parsed.project.urls.repository.removeprefix("https://github.com/").strip("/")
    prefix = f"https://raw.githubusercontent.com/{repo}/main/"
    assert icon.startswith(prefix), f"Icon should be a raw URL into {repo}'s main branch"
    path = REPO / icon.removeprefix(prefix)
    assert path.is_file(), f"{path.relative_to(REPO)} (the Icon) is not in the repo"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width == image.height <= 400, "the registry wants a square icon of at most 400x400"
    assert path.stat().st_size < 100_000
