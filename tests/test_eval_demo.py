"""`python -m concept_attention.demo` writes the masks and overlays, from an image and while generating; its sheet
has no blank tiles, its masks are argmax masks, and --help lists the words the tiny model knows."""

import numpy as np
import pytest

pytestmark = pytest.mark.host

GREY = 128  # the sheet's tile borders


def tiles(path):
    """The sheet's tiles, row by row, found by its grey borders: [[tile array [h, w, 3], ...], ...]."""
    from PIL import Image

    sheet = np.asarray(Image.open(path).convert("RGB"))
    grey = (sheet == GREY).all(-1)
    rows = _runs(~grey.all(1))  # bands between rows that are border from end to end
    result = []
    for top, bottom in rows:
        band = sheet[top:bottom]
        columns = _runs(~(band == GREY).all(-1).all(0))
        result.append([band[:, left:right] for left, right in columns])
    return result[1:] if len(result[0]) == 1 else result  # the first band is the header line when alone


def _runs(flags):
    """(start, end) of the runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    return list(zip(edges[::2], edges[1::2]))


def masks(path, names):
    from PIL import Image

    return np.stack([np.asarray(Image.open(path / f"mask_{n.replace(' ', '_')}.png").convert("L")) / 255.0
                     for n in names])


def test_demo_from_an_image(tmp_path, capsys):
    from PIL import Image

    from concept_attention.demo.__main__ import main
    from concept_attention.eval import scenes

    assert main(["--out", str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.glob("*.png")}
    assert {"image.png", "segmentation.png", "demo.png"} <= names
    for kind in ("heatmap", "overlay", "mask"):
        assert any(n.startswith(f"{kind}_") for n in names)
    assert Image.open(tmp_path / "image.png").size == (256, 256)
    out = capsys.readouterr().out
    assert "IoU with the exact mask" in out and "maps_from_latent" in out

    scene = scenes.make_scene(scenes.HELD_OUT_SEED + 7)  # the default scene
    grid = tiles(tmp_path / "demo.png")
    assert len(grid) == 1 + len(scene.concepts) and all(len(row) == 3 for row in grid), [len(r) for r in grid]
    for row in grid:
        for tile in row:
            picture = tile[:256]
            assert not (picture == picture[0, 0]).all(), "a blank tile"
    # argmax masks: every pixel belongs to exactly one concept, and mostly to the right one
    found = masks(tmp_path, scene.concepts)
    assert set(np.unique(found)) <= {0.0, 1.0} and (found.sum(0) == 1).all()
    exact = np.concatenate([scene.masks, scene.background_mask[None]]).repeat(8, 1).repeat(8, 2)
    iou = [(f.astype(bool) & e).sum() / (f.astype(bool) | e).sum() for f, e in zip(found, exact)]
    assert np.mean(iou) > 0.4, iou


def test_demo_while_generating(tmp_path, capsys):
    from concept_attention.demo.__main__ import main

    assert main(["--out", str(tmp_path), "--caption", "a red circle above a blue square on sand"]) == 0
    names = {p.name for p in tmp_path.glob("*.png")}
    assert {"mask_red_circle.png", "mask_blue_square.png", "mask_sand.png", "demo.png"} <= names
    assert "attach" in capsys.readouterr().out
    grid = tiles(tmp_path / "demo.png")
    assert len(grid) == 4 and all(len(row) == 2 for row in grid)  # no exact masks: two columns, no blanks
    assert (masks(tmp_path, ["red circle", "blue square", "sand"]).sum(0) == 1).all()


def test_help_lists_the_words_the_tiny_model_knows(capsys):
    from concept_attention.demo.__main__ import main
    from concept_attention.eval import scenes

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    for word in scenes.vocabulary():
        assert f" {word}," in shown or f" {word}\n" in shown, word
