"""The README's supported-models table is the adapters' own declarations (adding a family updates it)."""

import pytest

import host

pytestmark = pytest.mark.host


def test_readme_lists_every_supported_family():
    from concept_attention.adapters import adapter_classes, supported_table
    readme = (host.REPO / "README.md").read_text(encoding="utf-8")
    table = supported_table()
    assert table in readme, ("README.md's supported-models table is out of date; paste the output of "
                             "`python -m concept_attention.adapters` into it:\n" + table)
    for cls in adapter_classes():
        assert cls.family and cls.models and cls.default_blocks_text, f"{cls.__name__} lacks a declaration"
