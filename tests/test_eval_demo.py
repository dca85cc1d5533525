"""`python -m concept_attention.demo` writes the masks and overlays, from an image and while generating."""

import pytest

pytestmark = pytest.mark.host


def test_demo_from_an_image(tmp_path, capsys):
    from PIL import Image

    from concept_attention.demo.__main__ import main

    assert main(["--out", str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.glob("*.png")}
    assert {"image.png", "segmentation.png", "demo.png"} <= names
    for kind in ("heatmap", "overlay", "mask"):
        assert any(n.startswith(f"{kind}_") for n in names)
    assert Image.open(tmp_path / "image.png").size == (256, 256)
    out = capsys.readouterr().out
    assert "IoU with the exact mask" in out and "maps_from_latent" in out


def test_demo_while_generating(tmp_path, capsys):
    from concept_attention.demo.__main__ import main

    assert main(["--out", str(tmp_path), "--caption", "a red circle above a blue square on sand"]) == 0
    names = {p.name for p in tmp_path.glob("*.png")}
    assert {"mask_red_circle.png", "mask_blue_square.png", "mask_sand.png", "demo.png"} <= names
    assert "attach" in capsys.readouterr().out
