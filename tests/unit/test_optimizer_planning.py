"""Between the planner and the optimizer's messages: the forecast read from the predictor's
answer, and the plan written for the gateway."""

from __future__ import annotations

import math

import pytest

from smiless.catalogue import load_catalogue
from smiless.policy.costmodel import Forecast
from smiless.policy.profile import load_reference_profiles
from smiless.policy.search import fast_plan
from smiless.protoutil import get_seconds
from smiless.services.optimizer.forecasts import forecast_key, forecast_of
from smiless.services.optimizer.planning import plan_to_proto
from smiless.v1 import predictor_pb2


def _answer(**fields: float) -> predictor_pb2.PredictResponse:
    resp = predictor_pb2.PredictResponse(app="a", count=5)
    resp.next_it.FromNanoseconds(round(6e9))
    resp.keep_alive.FromNanoseconds(round(10e9))
    resp.slot.FromNanoseconds(round(2e9))
    resp.last_arrival.FromNanoseconds(round(1_700_000_000e9))
    if "burst" in fields:
        resp.burst.FromNanoseconds(round(fields["burst"] * 1e9))
    if "median" in fields:
        resp.next_it_median.FromNanoseconds(round(fields["median"] * 1e9))
    return resp


def test_the_burst_is_the_predictors_and_the_slot_when_it_gives_none() -> None:
    forecast, since = forecast_of(_answer(burst=0.0))
    assert (forecast.it_s, forecast.count, forecast.keep_alive_s, forecast.burst_s) == (6.0, 5, 10.0, 0.0)
    assert since == 1_700_000_000.0
    assert forecast_of(_answer(burst=0.75))[0].burst_s == 0.75
    # an older predictor does not send it: its requests may take the whole slot to come
    assert forecast_of(_answer())[0].burst_s == 2.0


def test_no_predicted_arrival_is_an_infinite_it() -> None:
    resp = _answer(burst=0.0)
    resp.next_it.FromNanoseconds(0)
    assert math.isinf(forecast_of(resp)[0].it_s)


def test_the_median_it_is_the_predictors_when_it_sends_one() -> None:
    assert forecast_of(_answer(burst=0.0, median=14.0))[0].it_median_s == 14.0
    assert forecast_of(_answer(burst=0.0))[0].it_median_s is None


def test_a_new_median_or_burst_is_a_new_forecast_to_plan_for() -> None:
    """The controller re-plans when the forecast key changes; the median and the burst change
    the plan (sla_aware_plan, the controller's burst wait) as the IT does."""
    base = forecast_key(_answer(burst=0.0, median=14.0))
    assert forecast_key(_answer(burst=0.0, median=14.0)) == base
    assert forecast_key(_answer(burst=0.0, median=20.0)) != base
    assert forecast_key(_answer(burst=0.0)) != base
    assert forecast_key(_answer(burst=0.5, median=14.0)) != base


def test_the_plan_carries_each_stages_downstream_latency_as_planned() -> None:
    """The gateway reads it rather than timing the DAG again."""
    ref = load_reference_profiles()
    models = {"a": "speechrecognition", "b": "topicmodeling", "c": "texttospeech"}
    profiles = {f: ref[m] for f, m in models.items()}
    plan = fast_plan(list(models), [("a", "b"), ("a", "c")], 10.0, profiles, load_catalogue(), Forecast(30.0))
    got = {fp.function: get_seconds(fp.downstream) for fp in plan_to_proto("app", plan, 0.0).functions}
    assert got == pytest.approx({f: fp.downstream_s for f, fp in plan.functions.items()}, abs=1e-9)
    lat = {f: fp.latency_s for f, fp in plan.functions.items()}
    assert got["a"] == pytest.approx(max(lat["b"], lat["c"])) and got["b"] == got["c"] == 0.0
