"""The segmentation metrics against small cases computed by hand (pure numpy, no ComfyUI)."""

import numpy as np
import pytest

from concept_attention.eval.metrics import (SegmentationScores, average_precision, binarize_at_mean, centre_prior,
                                            normalize01, two_channel_ap)


def test_average_precision_by_hand():
    # ranks: + (P 1, R .5), -, + (P 2/3, R 1), -  ->  .5 * 1 + .5 * 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([0.1, 0.2, 0.3], [0, 0, 1]) == pytest.approx(1.0)
    assert average_precision([0.3, 0.2, 0.1], [0, 0, 1]) == pytest.approx(1 / 3)


def test_average_precision_ties_form_one_threshold():
    # threshold .5 takes both tied pixels: P 1/2 at R 1/2; threshold .1: P 2/3 at R 1
    assert average_precision([0.5, 0.5, 0.1], [1, 0, 1]) == pytest.approx(0.25 + 1 / 3)
    # order inside a tie must not matter
    assert average_precision([0.5, 0.5, 0.1], [0, 1, 1]) == pytest.approx(0.25 + 1 / 3)


def test_average_precision_without_positives_is_zero():
    assert average_precision([0.3, 0.2], [0, 0]) == 0.0


def test_binarize_at_mean_is_strict():
    assert binarize_at_mean(np.array([[1.0, 3.0], [2.0, 2.0]])).tolist() == [[False, True], [False, False]]
    assert not binarize_at_mean(np.full((3, 3), 0.7)).any()


def test_normalize01():
    assert normalize01(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert normalize01(np.array([5.0, 5.0])).tolist() == [0.0, 0.0]


SOFT = np.array([[0.9, 0.1], [0.8, 0.2]])    # mean .5 -> prediction [[1, 0], [1, 0]]
TARGET = np.array([[True, False], [False, False]])


def test_two_channel_ap_by_hand():
    # s = [[1, 0], [.875, .125]]; pooled (1-s | bg) and (s | fg), ranked:
    # 1, 1 (both +): P 1 at R .5; .875, .875 (+, -): P 3/4 at R .75; .125, .125 (+, -): P 4/6 at R 1
    assert two_channel_ap(SOFT, TARGET) == pytest.approx(0.5 * 1 + 0.25 * 0.75 + 0.25 * 4 / 6)


def test_scores_one_image_by_hand():
    s = SegmentationScores()
    s.add(SOFT, TARGET)
    r = s.result()
    assert r["acc"] == 75.0                            # 3 of 4 pixels right
    assert r["miou"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2, abs=0.01)  # bg 2/3, fg 1/2
    assert r["map"] == pytest.approx(100 * (0.5 + 0.1875 + 1 / 6), abs=0.01)
    assert r["n"] == 1


def test_scores_sum_pixels_over_images_and_skip_ignored_pixels():
    s = SegmentationScores()
    s.add(SOFT, TARGET)                                # 3/4 right; fg 1/2, bg 2/3
    # 1x4 image; the last pixel is void and counts nowhere; prediction [1, 0, 0 | 1], truth [1, 1, 0 | 0]
    s.add(np.array([[1.0, 0.0, 0.0, 1.0]]), np.array([[True, True, False, False]]),
          valid=np.array([[True, True, True, False]]))
    r = s.result()
    assert r["acc"] == pytest.approx(100 * (3 + 2) / (4 + 3), abs=0.01)
    fg = (1 + 1) / (2 + 2)                              # inter / union summed: image 1 (1, 2), image 2 (1, 2)
    bg = (2 + 1) / (3 + 2)                              # image 1 (2, 3), image 2 (1, 2)
    assert r["miou"] == pytest.approx(100 * (fg + bg) / 2, abs=0.01)


def test_scores_take_a_given_binary_mask():
    s = SegmentationScores()
    s.add(SOFT, TARGET, mask=TARGET)                    # perfect binary mask, soft map unchanged
    r = s.result()
    assert r["acc"] == 100.0 and r["miou"] == 100.0


def test_scores_reject_mismatched_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        SegmentationScores().add(np.zeros((2, 2)), np.zeros((3, 3), bool))


def test_centre_prior_peaks_in_the_middle_and_is_symmetric():
    prior = centre_prior(8, 8)
    assert prior.shape == (8, 8)
    assert prior[3:5, 3:5].min() > prior[0, 0]
    assert np.allclose(prior, prior[::-1, ::-1]) and np.allclose(prior, prior.T)
