"""The paper's real zero-shot segmentation benchmarks, read from the files users download themselves.

ImageNet-Segmentation (Guillaumin et al., IJCV 2014; 4,276 images of 445 classes): one MATLAB v7.3 file,
`gtsegs_ijcv.mat`, which is HDF5. Under /value it holds three [N, 1] arrays of object references:
`img` (each an uint8 image stored as [3, W, H], MATLAB's column-major order), `gt` (each a 1x1 cell
whose reference is the uint8 mask [W, H], 1 = object) and `id` (each the uint16 characters of the image's
WordNet id, e.g. "n02085620_1234"). Reading it needs h5py (`pip install h5py`).

PascalVOC 2012 single-class split: the `val` images of the segmentation set whose ground truth holds
exactly one object class (besides background 0 and the void border 255), from a standard
VOCdevkit/VOC2012 folder (JPEGImages/, SegmentationClass/ palette PNGs, ImageSets/Segmentation/val.txt).

Both yield segmentation.Example objects: caption "a <class>", concepts [class] + background concepts
(the authors' lists), the class as the target, the masks at 224x224 (nearest), as in the paper's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .segmentation import Example

EVAL_SIZE = 224
# The authors' background concepts (their ImageNet-Seg list, and their PascalVOC list).
IMAGENET_BACKGROUND = ("background", "floor", "tree", "person", "face")
VOC_BACKGROUND = ("background", "floor", "grass", "tree", "sky")
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
# VOC's compound class names, as words a text encoder knows.
VOC_WORDS = {"aeroplane": "airplane", "diningtable": "dining table", "motorbike": "motorbike",
             "pottedplant": "potted plant", "tvmonitor": "tv monitor"}
VOC_VOID = 255


def example(image: np.ndarray, name: str, mask: np.ndarray, background, valid=None, size: int = EVAL_SIZE,
            **info) -> Example:
    """An Example for a single target class: caption "a <name>", concepts [name] + background."""
    concepts = [name] + [b for b in background if b.strip().lower() != name.strip().lower()]
    target = resize_mask(mask, size)
    valid = None if valid is None else resize_mask(valid, size)
    return Example(to_float(image), f"a {name}", concepts, [(0, target)], valid, {"name": name, **info})


def to_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
    return np.asarray(img.resize((size, size), Image.NEAREST)) > 127


def load_names(path: str | Path | None) -> dict:
    """A JSON object mapping class ids (WordNet ids, VOC class names) to concept names."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        names = json.load(f)
    if not isinstance(names, dict):
        raise ValueError(f"{path}: expected a JSON object mapping class ids to names")
    return {str(k): str(v) for k, v in names.items()}


# ------------------------------------------------------------------ ImageNet-Segmentation
def _h5py():
    try:
        import h5py
    except ImportError:
        raise SystemExit("Reading gtsegs_ijcv.mat (MATLAB v7.3, i.e. HDF5) needs h5py: pip install h5py") from None
    return h5py


def imagenet_seg_count(path: str | Path) -> int:
    with _h5py().File(str(path), "r") as f:
        return int(f["/value/img"].shape[0])


def read_imagenet_seg(path: str | Path, start: int = 0, limit: int | None = None):
    """(index, image uint8 [H, W, 3], mask bool [H, W], WordNet id) for each record of gtsegs_ijcv.mat."""
    with _h5py().File(str(path), "r") as f:
        refs_img, refs_gt, refs_id = f["/value/img"], f["/value/gt"], f["/value/id"]
        end = refs_img.shape[0] if limit is None else min(refs_img.shape[0], start + limit)
        for i in range(start, end):
            image = np.asarray(f[refs_img[i, 0]]).transpose(2, 1, 0)
            cell = f[refs_gt[i, 0]]
            mask = np.asarray(f[cell[0, 0]]).transpose(1, 0) > 0
            chars = np.asarray(f[refs_id[i, 0]]).ravel()
            wnid = "".join(chr(int(c)) for c in chars).strip("\x00 ").strip()
            yield i, image, mask, wnid


def wordnet_name(wnid: str) -> str | None:
    """English name of a WordNet id ("n02085620_1234" -> "Chihuahua") through nltk's WordNet, if installed."""
    try:
        from nltk.corpus import wordnet as wn

        synset = wn.synset_from_pos_and_offset(wnid[0], int(wnid[1:].split("_")[0]))
        return synset.lemmas()[0].name().replace("_", " ")
    except Exception:  # nltk or its wordnet data missing, or an id it does not know
        return None


def imagenet_seg_examples(path: str | Path, names: dict | None = None, background=IMAGENET_BACKGROUND,
                          start: int = 0, limit: int | None = None, size: int = EVAL_SIZE):
    """Examples of ImageNet-Segmentation. The class name comes from `names` (keys: full WordNet id, or its
    synset part "n02085620"), else from nltk's WordNet; an image with neither is an error that says so."""
    names = names or {}
    for index, image, mask, wnid in read_imagenet_seg(path, start, limit):
        synset = wnid.split("_")[0]
        name = names.get(wnid) or names.get(synset) or wordnet_name(wnid)
        if not name:
            raise SystemExit(
                f"No class name for image {index} (WordNet id {wnid!r}). Install nltk and its WordNet data "
                f"(pip install nltk; python -m nltk.downloader wordnet), or pass --class-names with a JSON "
                f"file mapping WordNet ids such as {synset!r} to names.")
        yield example(image, name, mask, background, size=size, index=index, wnid=wnid)


# ------------------------------------------------------------------ PascalVOC 2012, single-class split
def voc_root(path: str | Path) -> Path:
    """Accepts VOCdevkit/VOC2012, VOCdevkit, or a folder holding VOCdevkit."""
    path = Path(path)
    for candidate in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (candidate / "SegmentationClass").is_dir() and (candidate / "JPEGImages").is_dir():
            return candidate
    raise SystemExit(f"{path} is not a PascalVOC 2012 folder (expected VOCdevkit/VOC2012 with JPEGImages/ and "
                     f"SegmentationClass/).")


def voc_single_class_ids(root: str | Path, split: str = "val") -> list[str]:
    """Image ids of the split whose ground truth has exactly one object class."""
    root = voc_root(root)
    ids = (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
    return [i for i in ids if len(voc_classes(root, i)) == 1]


def voc_classes(root: Path, image_id: str) -> set[int]:
    labels = np.asarray(Image.open(root / "SegmentationClass" / f"{image_id}.png"))
    return set(np.unique(labels).tolist()) - {0, VOC_VOID}


def voc_examples(path: str | Path, split: str = "val", names: dict | None = None, background=VOC_BACKGROUND,
                 start: int = 0, limit: int | None = None, size: int = EVAL_SIZE, ids: list[str] | None = None):
    """Examples of the single-class split; void pixels (255) are left out of every metric."""
    root = voc_root(path)
    names = names or {}
    ids = voc_single_class_ids(root, split) if ids is None else ids
    ids = ids[start:] if limit is None else ids[start:start + limit]
    for image_id in ids:
        labels = np.asarray(Image.open(root / "SegmentationClass" / f"{image_id}.png"))
        (cls,) = set(np.unique(labels).tolist()) - {0, VOC_VOID}
        voc_name = VOC_CLASSES[cls]
        name = names.get(voc_name) or VOC_WORDS.get(voc_name, voc_name)
        image = np.asarray(Image.open(root / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
        yield example(image, name, labels == cls, background, valid=labels != VOC_VOID, size=size,
                      image_id=image_id, voc_class=voc_name)
