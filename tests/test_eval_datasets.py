"""The real-benchmark loaders on tiny files that this test writes in the real formats, and the benchmark CLI
end to end on them (with the tiny fixture model standing in for a real one)."""

import json

import numpy as np
import pytest
from PIL import Image

from concept_attention.eval import datasets, scenes

try:
    import h5py
except ImportError:  # the .mat reader needs it; the VOC side does not
    h5py = None
needs_h5py = pytest.mark.skipif(h5py is None, reason="h5py is not installed (pip install h5py)")

MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def one_object_scenes(count, start):
    return [scenes.make_scene(start + i, num_objects=1) for i in range(count)]


def upscaled(scene, size=(48, 64)):
    """The scene as uint8 at another (non-square) size, with its object mask resized alike."""
    h, w = size
    image = np.asarray(Image.fromarray((scene.image * 255).round().astype(np.uint8)).resize((w, h), Image.NEAREST))
    mask = np.asarray(Image.fromarray(scene.masks[0].astype(np.uint8)).resize((w, h), Image.NEAREST)) > 0
    return image, mask


def write_gtsegs(path, records):
    """records: (image uint8 [H, W, 3], mask bool [H, W], wordnet id). Written as MATLAB v7.3 writes
    gtsegs_ijcv.mat: a 512-byte MATLAB userblock, /value/{img,gt,id} as [N, 1] object references into
    #refs#, arrays stored transposed (column-major), gt as a 1x1 cell of references, id as uint16 chars."""
    n = len(records)
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        value = f.create_group("value")
        img = value.create_dataset("img", (n, 1), dtype=h5py.ref_dtype)
        gt = value.create_dataset("gt", (n, 1), dtype=h5py.ref_dtype)
        ids = value.create_dataset("id", (n, 1), dtype=h5py.ref_dtype)
        for i, (image, mask, wnid) in enumerate(records):
            img[i, 0] = refs.create_dataset(f"img{i}", data=image.transpose(2, 1, 0)).ref
            inner = refs.create_dataset(f"mask{i}", data=mask.astype(np.uint8).T)
            cell = refs.create_dataset(f"cell{i}", (1, 1), dtype=h5py.ref_dtype)
            cell[0, 0] = inner.ref
            gt[i, 0] = cell.ref
            chars = np.array([ord(c) for c in wnid], dtype=np.uint16)[:, None]
            ids[i, 0] = refs.create_dataset(f"id{i}", data=chars).ref
    with open(path, "r+b") as fh:
        fh.write(MATLAB_HEADER.ljust(116) + b"\x00" * 8 + b"\x00\x02IM")


def write_voc(root, records):
    """records: (image id, image uint8 [H, W, 3], labels uint8 [H, W] with 0 background, 255 void)."""
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    palette = [0, 0, 0] + [(37 * i) % 256 for i in range(3, 768)]
    for image_id, image, labels in records:
        Image.fromarray(image).save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
        png = Image.fromarray(labels, mode="P")
        png.putpalette(palette)
        png.save(base / "SegmentationClass" / f"{image_id}.png")
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(r[0] for r in records) + "\n")
    return base


def with_void_border(mask, cls):
    """VOC-style labels: the class inside, void (255) on a 1-pixel ring around it, background elsewhere."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    labels = np.where(mask, cls, 0).astype(np.uint8)
    labels[grown & ~mask] = datasets.VOC_VOID
    return labels


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inseg") / "gtsegs_ijcv.mat"
    records = []
    for i, scene in enumerate(one_object_scenes(4, scenes.HELD_OUT_SEED + 20_000)):
        image, mask = upscaled(scene)
        records.append((image, mask, f"n0000000{i}_{100 + i}"))
    write_gtsegs(path, records)
    names = {f"n0000000{i}": s.objects[0].name
             for i, s in enumerate(one_object_scenes(4, scenes.HELD_OUT_SEED + 20_000))}
    names_path = path.with_name("names.json")
    names_path.write_text(json.dumps(names))
    return path, records, names_path


@needs_h5py
def test_imagenet_seg_reader_gives_back_what_was_written(imagenet_file):
    path, records, _ = imagenet_file
    assert path.read_bytes()[:10] == b"MATLAB 7.3"
    assert datasets.imagenet_seg_count(path) == 4
    read = list(datasets.read_imagenet_seg(path))
    for (index, image, mask, wnid), (image0, mask0, wnid0) in zip(read, records):
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        assert np.array_equal(image, image0) and np.array_equal(mask, mask0) and wnid == wnid0
    assert [r[0] for r in datasets.read_imagenet_seg(path, start=1, limit=2)] == [1, 2]


@needs_h5py
def test_imagenet_seg_examples_follow_the_paper(imagenet_file):
    path, records, names_path = imagenet_file
    names = datasets.load_names(names_path)
    ex = list(datasets.imagenet_seg_examples(path, names, limit=2))
    assert len(ex) == 2
    first = ex[0]
    assert first.caption == f"a {names['n00000000']}"
    assert first.concepts == [names["n00000000"], *datasets.IMAGENET_BACKGROUND]
    (index, target), = first.targets
    assert index == 0 and target.shape == (224, 224) and target.dtype == bool
    assert abs(target.mean() - records[0][1].mean()) < 0.02
    assert first.image.dtype == np.float32 and first.image.shape == (48, 64, 3)


@needs_h5py
def test_imagenet_seg_without_a_class_name_says_what_to_do(imagenet_file, monkeypatch):
    path, _, _ = imagenet_file
    monkeypatch.setattr(datasets, "wordnet_name", lambda wnid: None)
    with pytest.raises(SystemExit, match="class-names"):
        next(datasets.imagenet_seg_examples(path, {}))


@pytest.fixture(scope="module")
def voc_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    objs = one_object_scenes(3, scenes.HELD_OUT_SEED + 30_000)
    records = []
    for i, (scene, cls) in enumerate(zip(objs, (8, 12, 8))):  # cat, dog, cat
        image, mask = upscaled(scene, (64, 64))
        records.append((f"2007_00000{i}", image, with_void_border(mask, cls)))
    two = scenes.make_scene(scenes.HELD_OUT_SEED + 30_100, num_objects=2)
    image, _ = upscaled(two, (64, 64))
    labels = np.zeros((64, 64), np.uint8)
    labels[:10, :10], labels[-10:, -10:] = 8, 15     # cat and person: not single-class
    records.append(("2007_000009", image, labels))
    base = write_voc(root, records)
    names = {"cat": objs[0].objects[0].name, "dog": objs[1].objects[0].name}
    (root / "names.json").write_text(json.dumps(names))
    return root, base, records, objs


def test_voc_single_class_split(voc_dir):
    root, base, records, objs = voc_dir
    assert datasets.voc_root(root) == base and datasets.voc_root(base) == base
    assert datasets.voc_single_class_ids(root) == ["2007_000000", "2007_000001", "2007_000002"]
    ex = list(datasets.voc_examples(root, names={"cat": "red circle"}))
    assert [e.info["voc_class"] for e in ex] == ["cat", "dog", "cat"]
    assert ex[0].caption == "a red circle" and ex[1].caption == "a dog"
    assert ex[0].concepts == ["red circle", *datasets.VOC_BACKGROUND]
    labels = records[0][2]
    assert (labels == datasets.VOC_VOID).any()
    assert ex[0].valid.shape == (224, 224) and not ex[0].valid.all()
    (_, target), = ex[0].targets
    assert not (target & ~ex[0].valid).any()


def test_voc_class_words():
    assert datasets.VOC_WORDS["pottedplant"] == "potted plant" and len(datasets.VOC_CLASSES) == 21


def test_not_a_voc_folder(tmp_path):
    with pytest.raises(SystemExit, match="PascalVOC"):
        datasets.voc_root(tmp_path)


def last_json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1]), "\n".join(out[:-1])


@needs_h5py
@pytest.mark.host
def test_imagenet_seg_cli_end_to_end(imagenet_file, capsys):
    from concept_attention.eval.__main__ import main

    path, _, names_path = imagenet_file
    assert main(["imagenet-seg", "--tiny", "--data", str(path), "--class-names", str(names_path),
                 "--background-concepts", "sand,grass,water,sky", "--methods", "all", "--no-progress",
                 "--json"]) == 0
    res, text = last_json(capsys)
    assert set(res) == {"concept_attention", "cross_attention", "output_no_softmax", "value", "centre_prior"}
    for row in res.values():
        assert row["n"] == 4 and all(0 <= row[k] <= 100 for k in ("acc", "miou", "map"))
    assert "ImageNet-Segmentation: 4 images" in text


@pytest.mark.host
def test_voc_cli_end_to_end(voc_dir, capsys):
    from concept_attention.eval.__main__ import main

    root, _, _, _ = voc_dir
    assert main(["voc", "--tiny", "--data", str(root), "--class-names", str(root / "names.json"),
                 "--background-concepts", "sand,grass,water,sky", "--limit", "2", "--no-progress", "--json"]) == 0
    res, text = last_json(capsys)
    assert list(res) == ["concept_attention"] and res["concept_attention"]["n"] == 2
    assert "single-class split: 2 images" in text


class PoolingVAE:
    """Stands in for a VAE (the one piece not built from ComfyUI here): 8x average pooling, 16 channels."""

    def encode(self, pixels):
        import torch.nn.functional as F

        x = F.avg_pool2d(pixels.movedim(-1, 1), 8)
        return x.repeat(1, 6, 1, 1)[:, :16]


@pytest.mark.host
def test_comfy_backend_runs_the_protocol_with_comfyui_models(flux, clip, voc_dir):
    """The real-model backend (ComfyUI MODEL + CLIP objects) through the whole protocol: image resized to
    the working resolution, caption conditioning, concepts encoded once and reused."""
    from concept_attention.eval import segmentation
    from concept_attention.eval.backends import ComfyBackend

    root = voc_dir[0]
    backend = ComfyBackend(flux, clip, PoolingVAE(), resolution=64)
    examples = list(datasets.voc_examples(root, names={"dog": "cat"}, background=("sofa", "window"), limit=2))
    assert backend.encode(examples[0].image).shape == (1, 16, 8, 8)
    scores = segmentation.run(backend, examples, ("concept_attention", "cross_attention"), layers=[1, 2])
    res = segmentation.results(scores)
    assert res["concept_attention"]["n"] == 2 and 0 <= res["cross_attention"]["map"] <= 100
    assert set(backend._concepts) == {"cat", "sofa", "window"}
