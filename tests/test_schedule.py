"""The learning-rate schedule against upstream's measured epoch-by-epoch values."""
import math

import pytest
import torch

from litemono.config import UPSTREAM_LR, lr_schedule_params
from litemono.schedule import EpochLRSchedule, build_schedules, cosine_restart_lr

# Measured by running upstream's scheduler package (../shared/spec/upstream.md section 5),
# with --lr 1e-4 5e-6 31 1e-4 1e-5 31; tolerance = the spec's 4 significant digits.
DEPTH_TABLE = {0: 9.976e-5, 1: 9.903e-5, 9: 7.763e-5, 14: 5.491e-5, 29: 5.244e-6, 30: 9.000e-5,
               49: 3.274e-5}
POSE_TABLE = {0: 9.977e-5, 29: 1.023e-5, 30: 9.0e-5}


@pytest.mark.parametrize("epoch,expected", sorted(DEPTH_TABLE.items()))
def test_depth_schedule_matches_upstream_table(epoch, expected):
    peak, floor, cycle = UPSTREAM_LR[0:3]
    assert cosine_restart_lr(epoch, peak, floor, cycle) == pytest.approx(expected, rel=6e-4)


@pytest.mark.parametrize("epoch,expected", sorted(POSE_TABLE.items()))
def test_pose_schedule_matches_upstream_table(epoch, expected):
    peak, floor, cycle = UPSTREAM_LR[3:6]
    assert cosine_restart_lr(epoch, peak, floor, cycle) == pytest.approx(expected, rel=6e-4)


def test_restart_shape():
    # cycle of 4 epochs: positions 1, 2, 3 are in the first cosine, position 4 restarts at 0.9 peak
    values = [cosine_restart_lr(e, 1.0, 0.0, 4) for e in range(8)]
    assert values[2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 4)))
    assert values[3] == pytest.approx(0.9)
    assert values[7] == pytest.approx(0.81)
    assert all(a > b for a, b in zip(values[3:6], values[4:7]))  # decreasing within a cycle
    with pytest.raises(ValueError, match="cycle"):
        cosine_restart_lr(0, 1.0, 0.0, 0.5)


def test_schedule_sets_optimizer_and_restores_state():
    params = [torch.nn.Parameter(torch.zeros(2))]
    depth_opt = torch.optim.AdamW(params, lr=1.0)
    pose_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedules = build_schedules(depth_opt, pose_opt, lr_schedule_params(list(UPSTREAM_LR)))
    assert schedules["depth"].set_epoch(30) == pytest.approx(9.0e-5)
    assert depth_opt.param_groups[0]["lr"] == pytest.approx(9.0e-5)
    assert schedules["pose"].set_epoch(29) == pytest.approx(1.023e-5, rel=6e-4)

    fresh_opt = torch.optim.AdamW(params, lr=1.0)
    restored = EpochLRSchedule(fresh_opt, 1.0, 0.5, 2)
    restored.load_state_dict(schedules["depth"].state_dict())
    assert restored.epoch == 30
    assert fresh_opt.param_groups[0]["lr"] == depth_opt.param_groups[0]["lr"]


def test_single_lr_number_sets_both_peaks():
    lr = lr_schedule_params([2e-4])
    assert cosine_restart_lr(30, *lr[0:3]) == pytest.approx(0.9 * 2e-4)
    assert cosine_restart_lr(30, *lr[3:6]) == pytest.approx(0.9 * 2e-4)
