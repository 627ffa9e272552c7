from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smiless.catalogue import Kind
from smiless.policy.profile import (
    FunctionProfile,
    InferenceModel,
    InitModel,
    InitPhase,
    ObservedInits,
    ProfileError,
    latency_on,
    load_reference_profiles,
    profile_for,
    reference_fit,
)

from .helpers import CATALOGUE, profile

REF = load_reference_profiles()
R_REF = {Kind.CPU: 1.0, Kind.GPU: 10.0}
GRID_R = {Kind.CPU: (1.0, 2.0, 4.0, 8.0, 16.0, 32.0), Kind.GPU: tuple(float(g) for g in range(10, 101, 10))}


def raw_latency(fit: tuple[float, float, float, float], b: int, r: float) -> float:
    lam, alpha, beta, gamma = fit
    return lam * b * (alpha / r + beta) + gamma


def test_reference_has_16_functions_with_both_kinds() -> None:
    assert len(REF) == 16
    for model, kinds in REF.items():
        assert set(kinds) == {"cpu", "gpu"}, model
        for kind in Kind:
            p = kinds[kind.value]
            assert p.kind is kind and p.model == model
            assert p.init.mean > 0 and p.cs_extra >= 0


@pytest.mark.parametrize("model", sorted(REF))
@pytest.mark.parametrize("kind", list(Kind))
def test_clamped_profiles_keep_the_reference_operating_point(model: str, kind: Kind) -> None:
    """The clamp must not move the numbers the reference's optimizer used: T(1, 1 core) on
    CPU and T(1, 10 %) on GPU."""
    fit = reference_fit(model, kind)
    p = REF[model][kind.value]
    assert p.inference.latency(1, R_REF[kind]) == pytest.approx(raw_latency(fit, 1, R_REF[kind]), abs=2e-6)


@pytest.mark.parametrize("model", sorted(REF))
@pytest.mark.parametrize("kind", list(Kind))
def test_clamped_profiles_are_positive_and_monotone(model: str, kind: Kind) -> None:
    m = REF[model][kind.value].inference
    rs = GRID_R[kind]
    for r in rs:
        ts = [m.latency(b, r) for b in (1, 2, 4, 8, 16, 32)]
        assert all(t > 0 for t in ts)
        assert ts == sorted(ts), "latency must not fall as the batch grows"
    for b in (1, 4, 32):
        ts = [m.latency(b, r) for r in rs]
        assert ts == sorted(ts, reverse=True), "latency must not rise with more resource"


@pytest.mark.parametrize("model", sorted(REF))
@pytest.mark.parametrize("kind", list(Kind))
def test_stored_values_are_the_documented_clamp_of_the_fit(model: str, kind: Kind) -> None:
    fit = reference_fit(model, kind)
    again = InferenceModel.from_unconstrained_fit(*fit, r_ref=R_REF[kind])
    stored = REF[model][kind.value].inference
    for b in (1, 3, 16):
        for r in GRID_R[kind]:
            assert stored.latency(b, r) == pytest.approx(again.latency(b, r), rel=1e-5)


def test_some_reference_fits_are_non_physical_so_the_clamp_matters() -> None:
    """partofspeech on GPU gives a negative time at B = 16 in the raw fit (reference §1.1)."""
    fit = reference_fit("partofspeech", Kind.GPU)
    assert raw_latency(fit, 16, 10.0) < 0
    assert REF["partofspeech"]["gpu"].inference.latency(16, 10.0) > 0


def test_clamp_refuses_a_fit_that_cannot_be_made_positive() -> None:
    with pytest.raises(ProfileError, match="refit"):
        InferenceModel.from_unconstrained_fit(1.0, -1.0, 0.0, 0.5, r_ref=1.0)


@pytest.mark.parametrize(
    "args",
    [
        (-0.1, 1.0, 0.0, 0.1),
        (1.0, -1.0, 0.0, 0.1),
        (1.0, 1.0, -0.1, 0.1),
        (1.0, 1.0, 0.0, 0.0),
        (1.0, math.nan, 0.0, 0.1),
        (1.0, math.inf, 0.0, 0.1),
    ],
)
def test_inference_model_rejects_non_physical_parameters(args: tuple[float, float, float, float]) -> None:
    with pytest.raises(ProfileError):
        InferenceModel(*args)


ALPHA = st.one_of(st.just(0.0), st.floats(1e-6, 5.0))  # no denormals: they are not physics
BETA = st.one_of(st.just(0.0), st.floats(1e-6, 0.5))


@given(
    st.floats(0.01, 2.0),
    ALPHA,
    BETA,
    st.floats(0.01, 1.0),
    st.integers(1, 64),
    st.floats(0.01, 10.0),
)
def test_inverse_gives_the_least_sufficient_resource(
    lam: float, alpha: float, beta: float, gamma: float, b: int, budget: float
) -> None:
    m = InferenceModel(lam, alpha, beta, gamma)
    r = m.resource_for(b, budget)
    if r is None:
        # infeasible exactly when the serial part alone reaches the budget
        assert lam * b * beta + gamma >= budget
        assert m.latency(b, 1e12) >= budget * (1 - 1e-9)
    elif r > 0:
        assert m.latency(b, r) == pytest.approx(budget, rel=1e-9)
        assert m.latency(b, r * 0.999) > budget
    else:
        assert alpha == 0 or lam == 0


@given(st.floats(0.01, 2.0), ALPHA, BETA, st.floats(0.01, 1.0), st.floats(0.5, 32.0), st.floats(0.01, 10.0))
def test_max_batch_is_the_largest_batch_within_budget(
    lam: float, alpha: float, beta: float, gamma: float, r: float, budget: float
) -> None:
    m = InferenceModel(lam, alpha, beta, gamma)
    b = m.max_batch(r, budget)
    assert m.max_batch(r, budget + 0.5) >= b
    if b < 10_000:
        assert b == 0 or m.latency(b, r) <= budget
        assert m.latency(b + 1, r) > budget


def test_init_model_adds_variances_not_sigmas() -> None:
    init = InitModel((InitPhase("container", 1.0, 0.3), InitPhase("import", 2.0, 0.4)))
    assert init.mean == pytest.approx(3.0)
    assert init.std == pytest.approx(0.5)
    assert init.bound() == pytest.approx(4.5)
    assert init.bound(1.0) == pytest.approx(3.5)
    with pytest.raises(ProfileError):
        InitPhase("bad", 1.0, -0.1)


def test_profile_lookup_by_config_name_wins_over_kind() -> None:
    cpu = profile(Kind.CPU, 1.0, 1.0, 0.0, 0.1, 1.0, 0.0)
    cpu4 = profile(Kind.CPU, 1.0, 0.0, 0.0, 0.05, 1.0, 0.0)
    profiles = {"cpu": cpu, "cpu-4": cpu4}
    assert profile_for(profiles, CATALOGUE["cpu-2"]) is cpu
    assert profile_for(profiles, CATALOGUE["cpu-4"]) is cpu4
    assert profile_for(profiles, CATALOGUE["gpu-10"]) is None
    assert latency_on(profiles, CATALOGUE["cpu-2"]) == pytest.approx(0.6)
    assert latency_on(profiles, CATALOGUE["gpu-10"]) is None
    with pytest.raises(ProfileError):
        profile_for({"gpu": cpu}, CATALOGUE["gpu-10"])


def test_warm_latency_includes_the_first_request_extra() -> None:
    p = FunctionProfile("m", Kind.GPU, InferenceModel(1.0, 10.0, 0.0, 0.1), InitModel.single(1.0, 0.0), 0.25)
    assert p.warm_latency(CATALOGUE["gpu-50"]) == pytest.approx(1.0 * (10.0 / 50) + 0.1 + 0.25)


def test_observed_starts_widen_the_init_and_never_shorten_it() -> None:
    prof = FunctionProfile(
        "m", Kind.CPU, InferenceModel(1.0, 0.1, 0.1, 0.01), InitModel.single(3.5, 0.1), 0.0
    )
    seen = ObservedInits(window=4, min_samples=3)
    seen.record("m", Kind.CPU, 4.0)
    seen.record("m", Kind.CPU, 5.0)
    assert seen.widen(prof) is prof, "too few starts to go by"
    seen.record("m", Kind.CPU, 6.0)
    wide = seen.widen(prof)
    # observed mean 5, sample σ 1: the init becomes mean 5, σ 1 (each the larger of the two)
    assert wide.init.mean == pytest.approx(5.0) and wide.init.std == pytest.approx(1.0)
    assert wide.init.bound(3.0) == pytest.approx(8.0) and wide.init.phases[-1].name == "observed"
    assert wide.inference == prof.inference
    assert seen.widen(replace(prof, kind=Kind.GPU)).init == prof.init, "per (model, kind)"
    for _ in range(4):  # a quiet spell: only the last 4 count, all faster than the profile
        seen.record("m", Kind.CPU, 3.0)
    assert seen.widen(prof) is prof
    seen.record("m", Kind.CPU, float("nan"))
    assert len(seen.samples[("m", Kind.CPU)]) == 4
