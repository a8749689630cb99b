"""Schedules: values at the steps that define them, run-length checks, bad settings, round trips."""

from __future__ import annotations

import json
import math

import pytest

from collapsekit.errors import ParameterError
from collapsekit.objectives import (SCHEDULES, Capacity, Constant, Cyclical, LinearWarmup, SigmoidWarmup,
                                    build_schedule, schedule_from_dict)


def test_constant():
    assert Constant().value(0) == Constant().value(10**9) == 1.0
    assert Constant(0.25).value(7) == 0.25
    Constant().validate(1)


def test_linear_warmup_start_middle_end():
    s = LinearWarmup(warmup_steps=1000, start=0.1, end=1.0)
    assert s.value(0) == 0.1
    assert s.value(500) == pytest.approx(0.55)
    assert s.value(999) == pytest.approx(0.1 + 0.9 * 0.999)
    assert s.value(1000) == s.value(5000) == 1.0
    assert LinearWarmup(0).value(0) == 1.0                                  # no warm-up at all


def test_sigmoid_warmup_start_midpoint_end():
    s = SigmoidWarmup(warmup_steps=1000)
    assert s.value(0) == pytest.approx(0.0, abs=1e-15)
    assert s.value(500) == pytest.approx(0.5, abs=1e-15)                   # the midpoint is half
    assert s.value(1000) == s.value(2000) == pytest.approx(1.0, abs=1e-15)
    values = [s.value(t) for t in range(0, 1001, 50)]
    assert all(a < b for a, b in zip(values, values[1:]))
    shifted = SigmoidWarmup(warmup_steps=100, start=0.2, end=0.8, steepness=4.0)
    assert shifted.value(50) == pytest.approx(0.5) and shifted.value(0) == pytest.approx(0.2)
    # Bowman-style logistic 1/(1 + exp(−k(t − x₀))), k = 0.0025, x₀ = 2500 (docs/metrics.md §9.2).
    bowman = SigmoidWarmup(warmup_steps=5000, steepness=12.5)
    for t in range(0, 5001, 250):
        assert bowman.value(t) == pytest.approx(1 / (1 + math.exp(-0.0025 * (t - 2500))), abs=0.002)


def frange_cycle_linear(n_iter: int, start: float, stop: float, n_cycle: int, ratio: float) -> list[float]:
    """The array of Fu et al.'s reference code as docs/metrics.md §9.3 describes it (whole array, linear ramps,
    ``step = (stop − start)/(period·ratio)``, ones·stop elsewhere), rewritten here for the comparison."""
    values = [stop] * n_iter
    period = n_iter / n_cycle
    step = (stop - start) / (period * ratio)
    for c in range(n_cycle):
        v, i = start, 0
        while v <= stop and int(i + c * period) < n_iter:
            values[int(i + c * period)] = v
            v += step
            i += 1
    return values


def test_cyclical_within_a_cycle_and_at_the_boundary():
    s = Cyclical(total_steps=1000, n_cycles=4, ratio=0.5)
    assert s.value(0) == 0.0                                               # a cycle starts at the start value
    assert s.value(62) == pytest.approx(62 / 125)                          # ramping: 125 steps to the top
    assert s.value(125) == s.value(200) == s.value(249) == 1.0             # plateau for the second half
    assert s.cycle(249) == (0, 0.996)
    assert s.value(250) == 0.0 and s.cycle(250) == (1, 0.0)                # the boundary: back to start
    assert s.value(999) == 1.0 and s.value(1500) == 1.0                    # after the run: stays at the end
    for total, cycles, ratio in ((1000, 4, 0.5), (10, 3, 0.5), (97, 5, 0.3), (50, 1, 1.0)):
        reference = frange_cycle_linear(total, 0.0, 1.0, cycles, ratio)
        mine = Cyclical(total, cycles, ratio)
        assert [mine.value(t) for t in range(total)] == pytest.approx(reference, abs=1e-9), (total, cycles, ratio)


def test_capacity_is_linear_to_c_max():
    s = Capacity(c_max=25.0, steps=1000, gamma=1000.0)
    assert s.controls == "capacity" and LinearWarmup(10).controls == "beta_scale"
    assert (s.value(0), s.value(400), s.value(1000), s.value(4000)) == (0.0, 10.0, 25.0, 25.0)


@pytest.mark.parametrize(("schedule", "field"), [
    (LinearWarmup(warmup_steps=5000), "warmup_steps"),
    (SigmoidWarmup(warmup_steps=5000), "warmup_steps"),
    (Capacity(c_max=25.0, steps=5000), "steps"),
    (Cyclical(total_steps=5000), "total_steps"),
])
def test_validate_rejects_a_ramp_longer_than_the_run(schedule, field):
    with pytest.raises(ParameterError, match=rf"^{field}: .*5000 steps is longer than the run \(1200 steps\)"):
        schedule.validate(1200)
    schedule.validate(5000 if isinstance(schedule, Cyclical) else 5001)
    schedule.validate(20_000)


def test_validate_rejects_a_warmup_as_long_as_the_run():
    """Steps run 0 … T−1: a warm-up of T steps reaches its end value only after training."""
    with pytest.raises(ParameterError, match="as long as the run"):
        LinearWarmup(1200).validate(1200)
    with pytest.raises(ParameterError, match="total_steps"):
        Constant().validate(0)


@pytest.mark.parametrize(("name", "settings", "field"), [
    ("constant", {"value": -1.0}, "value"),
    ("linear", {"warmup_steps": -5}, "warmup_steps"),
    ("linear", {"warmup_steps": 10.5}, "warmup_steps"),
    ("linear", {"warmup_steps": True}, "warmup_steps"),
    ("linear", {"warmup_steps": 10, "start": float("nan")}, "start"),
    ("linear", {"warmup_steps": 10, "end": -1.0}, "end"),
    ("sigmoid", {"warmup_steps": 10, "steepness": 0.0}, "steepness"),
    ("cyclical", {"total_steps": 100, "ratio": 0.0}, "ratio"),
    ("cyclical", {"total_steps": 100, "ratio": 1.5}, "ratio"),
    ("cyclical", {"total_steps": 100, "n_cycles": 0}, "n_cycles"),
    ("cyclical", {"total_steps": 3, "n_cycles": 4}, "n_cycles"),
    ("capacity", {"c_max": -1.0, "steps": 10}, "c_max"),
    ("capacity", {"c_max": 5.0, "steps": 0}, "steps"),
    ("capacity", {"c_max": 5.0, "steps": 10, "gamma": 0.0}, "gamma"),
])
def test_bad_settings_fail_when_built(name, settings, field):
    with pytest.raises(ParameterError, match=field):
        build_schedule(name, **settings)


def test_negative_step_is_an_error():
    with pytest.raises(ParameterError, match="step"):
        LinearWarmup(10).value(-1)


def test_registry_and_round_trips():
    assert set(SCHEDULES) == {"constant", "linear", "sigmoid", "cyclical", "capacity"}
    assert LinearWarmup(warmup_steps=1e4).warmup_steps == 10_000            # YAML writes 1e4
    schedules = [Constant(0.5), LinearWarmup(100, start=0.1), SigmoidWarmup(100, steepness=6.0),
                 Cyclical(1000, n_cycles=2, ratio=0.25), Capacity(25.0, 500, gamma=100.0)]
    for schedule in schedules:
        spec = json.loads(json.dumps(schedule.to_dict()))                   # plain, serialisable values
        again = schedule_from_dict(spec)
        assert again == schedule and again.to_dict() == spec
        assert [again.value(t) for t in (0, 33, 250, 999)] == [schedule.value(t) for t in (0, 33, 250, 999)]
    with pytest.raises(ParameterError, match="choose one of constant, linear, sigmoid, cyclical, capacity"):
        build_schedule("cosine")
    with pytest.raises(ParameterError, match="no setting warmup; accepted: warmup_steps, start, end"):
        build_schedule("linear", warmup=100)
    with pytest.raises(ParameterError, match="'cyclical' needs total_steps"):
        build_schedule("cyclical", n_cycles=2)
    with pytest.raises(ParameterError, match="'name'"):
        schedule_from_dict({"warmup_steps": 3})
