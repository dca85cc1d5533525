"""The masks find the concepts: the tiny trained Flux, held-out synthetic scenes, the paper's protocol.

Thresholds are the values measured with the shipped fixture on these very scenes (in the comments; the full
128-scene table is in docs/EVALUATION.md), less headroom for other CPUs and torch versions.
"""

import pytest

from concept_attention.eval.tiny_model import READ_BLOCKS

pytestmark = pytest.mark.host

SCENES = 48
# Measured (Acc / mIoU / mAP): ConceptAttention 82.25 / 59.01 / 96.42, value space 70.31 / 43.50 / 86.38, output
# space without softmax 39.80 / 22.99 / 44.42, centre prior 62.45 / 37.37 / 75.10. Raw cross-attention (79.42 /
# 55.52 / 96.56 at these blocks) is NOT asserted against: at its own validation-chosen blocks it does better
# than ConceptAttention on this tiny model (docs/EVALUATION.md, "each space at its own blocks").
MIN_ACC, MIN_MIOU, MIN_MAP = 78.0, 54.0, 93.0
MARGIN_PRIOR_MIOU, MARGIN_PRIOR_MAP = 15.0, 15.0  # measured +21.64, +21.32
MARGIN_ABLATION_MIOU, MARGIN_ABLATION_MAP = 8.0, 5.0  # measured vs value space +15.51, +10.04
# Generation, 24 captions: named colours drawn 0.952, backgrounds 1.0, objects in unnamed colours 0.0; shapes
# right only 0.19 (the tiny model draws blobs; not asserted, see docs/EVALUATION.md).
GEN_CAPTIONS = 24
MIN_GEN_COLOR, MIN_GEN_BACKGROUND, MAX_GEN_EXTRA = 0.85, 0.95, 0.1
# Generation-path masks, 12 captions (21 drawn objects): peak on the object 0.952 (chance 0.096), the object's
# concept wins 0.713 of its pixels, IoU of the mean-threshold mask 0.303.
MASK_CAPTIONS = 12
MIN_MASK_PEAK_HIT, MIN_MASK_ARGMAX, MIN_MASK_IOU = 0.8, 0.55, 0.2


@pytest.fixture(scope="module")
def tiny():
    from concept_attention.eval.tiny_model import load

    return load()


@pytest.fixture(scope="module")
def segmentation_results(tiny):
    from concept_attention.eval import segmentation, synthetic
    from concept_attention.eval.backends import TinyBackend

    scores = segmentation.run(TinyBackend(tiny), synthetic.segmentation_examples(SCENES), layers=list(READ_BLOCKS))
    return segmentation.results(scores)


def test_read_blocks_are_the_validation_choice(tiny):
    """READ_BLOCKS (what the benchmark and demo read) is what select_blocks picks on validation scenes."""
    from concept_attention.eval.backends import TinyBackend
    from concept_attention.eval.synthetic import select_blocks

    assert select_blocks(TinyBackend(tiny)) == list(READ_BLOCKS)


def test_concept_attention_segments_held_out_scenes(segmentation_results):
    ca = segmentation_results["concept_attention"]
    assert ca["n"] >= SCENES  # every object of every scene
    assert ca["miou"] >= MIN_MIOU and ca["acc"] >= MIN_ACC and ca["map"] >= MIN_MAP


def test_the_papers_ablation_holds_output_space_with_softmax_wins(segmentation_results):
    """The method's space beats the value space and the output space without the softmax."""
    ca = segmentation_results["concept_attention"]
    for other in ("value", "output_no_softmax"):
        assert ca["miou"] - segmentation_results[other]["miou"] >= MARGIN_ABLATION_MIOU
        assert ca["map"] - segmentation_results[other]["map"] >= MARGIN_ABLATION_MAP


def test_concept_attention_beats_the_centre_prior(segmentation_results):
    ca, prior = segmentation_results["concept_attention"], segmentation_results["centre_prior"]
    assert ca["miou"] - prior["miou"] >= MARGIN_PRIOR_MIOU
    assert ca["map"] - prior["map"] >= MARGIN_PRIOR_MAP


def test_the_model_draws_the_colours_and_backgrounds_the_captions_say(tiny):
    from concept_attention.eval.synthetic import generation_check, generation_rates

    rates = generation_rates(generation_check(tiny, GEN_CAPTIONS))
    assert rates["background"] >= MIN_GEN_BACKGROUND
    assert rates["color"] >= MIN_GEN_COLOR
    assert rates["extra_colors"] <= MAX_GEN_EXTRA


def test_generation_path_masks_land_on_the_drawn_objects(tiny):
    from concept_attention.eval.synthetic import generation_masks, summarize_masks

    summary = summarize_masks(generation_masks(tiny, MASK_CAPTIONS, layers=list(READ_BLOCKS)))
    assert summary["objects"] >= MASK_CAPTIONS
    assert summary["peak_hit"] >= MIN_MASK_PEAK_HIT and summary["peak_hit"] >= 4 * summary["chance"]
    assert summary["argmax_share"] >= MIN_MASK_ARGMAX
    assert summary["iou"] >= MIN_MASK_IOU


def test_generation_cli_reports_rates_and_masks(capsys):
    """`python -m concept_attention.eval generation --json`: the rates and the mask summary, as one JSON line."""
    import json

    from concept_attention.eval.__main__ import main

    assert main(["generation", "--captions", "2", "--masks", "1", "--layers", "3", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    res = json.loads(out[-1])
    assert set(res) == {"generation", "generation_masks"}
    assert 0 <= res["generation"]["color"] <= 1 and res["generation"]["background"] == 1.0
    assert res["generation_masks"]["objects"] >= 1 and "Generated images vs. captions (2" in out[0]
