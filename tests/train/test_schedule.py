"""The learning-rate schedule against hand-computed values."""

import math

import pytest

from resnets.train.config import TrainConfig
from resnets.train.schedule import Schedule


def test_cosine_with_linear_warmup_by_epochs():
    c = TrainConfig(epochs=10, lr=0.2, schedule="cosine", warmup=2, warmup_lr=0.0)
    s = Schedule.from_config(c, steps_per_epoch=10)
    assert (s.total_steps, s.warmup_steps) == (100, 20)
    assert s(0) == 0 and s(10) == pytest.approx(0.1) and s(20) == pytest.approx(0.2)
    assert s(60) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 40 / 80)))
    assert s(100) == pytest.approx(0.0)


def test_step_schedule_milestones_count_epochs_unless_the_run_counts_iterations():
    by_epoch = Schedule.from_config(TrainConfig(epochs=3, milestones=[1, 2]), steps_per_epoch=7)
    assert [by_epoch(i) for i in (6, 7, 13, 14)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    by_iter = Schedule.from_config(
        TrainConfig(epochs=None, iterations=30, milestones=[10]), steps_per_epoch=7
    )
    assert (by_iter.total_steps, by_iter(9), by_iter(10)) == (30, 0.1, pytest.approx(0.01))
