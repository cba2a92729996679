"""The device-side loss record: running means per read, every step's total, the first bad step."""
import math

import pytest
import torch

from litemono.loss_tracker import LossTracker, TrainingDiverged


def terms(photometric, smoothness):
    return {"photometric": torch.tensor(photometric), "smoothness": torch.tensor(smoothness)}


def test_read_gives_the_mean_since_the_last_read_and_keeps_every_total():
    tracker = LossTracker()
    assert tracker.read() == {}
    for step, (p, s) in enumerate([(1.0, 0.5), (3.0, 1.5), (2.0, 0.25)], start=1):
        tracker.update(step, torch.tensor(p + s), terms(p, s))
        if step == 2:
            assert tracker.read() == {"loss": 3.0, "photometric": 2.0, "smoothness": 1.0}
    assert tracker.read() == {"loss": 2.25, "photometric": 2.0, "smoothness": 0.25}
    assert tracker.losses == [1.5, 4.5, 2.25]
    tracker.check()  # nothing pending: no change
    assert tracker.losses == [1.5, 4.5, 2.25]


def test_the_first_non_finite_step_is_named_with_its_terms():
    tracker = LossTracker()
    tracker.update(1, torch.tensor(1.0), terms(0.5, 0.5))
    tracker.update(2, torch.tensor(float("inf")), terms(float("inf"), 0.25))
    tracker.update(3, torch.tensor(float("nan")), terms(float("nan"), float("nan")))
    with pytest.raises(TrainingDiverged) as caught:
        tracker.read()
    assert str(caught.value) == ("step 2: non-finite loss inf (photometric=inf, "
                                 "smoothness=0.25); stopping")
    assert tracker.losses == []  # no total of a diverged stretch is reported as read


def test_a_non_finite_term_alone_counts_as_divergence():
    tracker = LossTracker()
    tracker.update(7, torch.tensor(1.0), terms(1.0, float("nan")))
    with pytest.raises(TrainingDiverged, match=r"^step 7: non-finite loss 1 \(.*smoothness=nan"):
        tracker.check()
    assert math.isnan(tracker._bad_values[2])
