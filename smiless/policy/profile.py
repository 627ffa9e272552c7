"""Profiles: how long a function takes to start and to infer on a hardware kind.

A profile is per (function, hardware kind), as the reference fits it: the inference model's
`r` is the config's resource (cores on CPU, GPU share in percent on GPU), so one CPU profile
serves cpu-1 … cpu-16 and one GPU profile serves gpu-10 … gpu-100. All of it is pure data and
arithmetic; the profiler measures and fits, the planner only reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import yaml

from smiless.catalogue import HardwareConfig, Kind

DEFAULT_K_SIGMA = 3.0
"""Init time is planned at μ + kσ: with k = 3 a normal init overruns its bound 0.13 % of the time."""


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the offending field."""


@dataclass(frozen=True, slots=True)
class InferenceModel:
    """Amdahl-style inference time `T(B, r) = λ·B·(α/r + β) + γ` (seconds).

    `α/r` is the part that parallelises over the resource, `β` the serial part, `λ` the
    per-request scale and `γ` a fixed overhead. We require every parameter ≥ 0 and T > 0 at
    every r, so T never falls as the batch grows and never rises with more resource; the
    autoscaler's bisection relies on that monotonicity. Use `from_unconstrained_fit` for an
    unconstrained fit such as the reference's.
    """

    lam: float
    alpha: float
    beta: float
    gamma: float

    def __post_init__(self) -> None:
        for name in ("lam", "alpha", "beta", "gamma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ProfileError(f"inference.{name} must be finite and >= 0, got {value!r}")
        if not self.gamma + self.lam * self.beta > 0.0:
            raise ProfileError("inference: gamma + lam*beta must be > 0 so T(B, r) > 0 for every r")

    def latency(self, batch: int, r: float) -> float:
        """Seconds to serve one batch of `batch` requests on resource `r` (cores or GPU %)."""
        return self.lam * batch * (self.alpha / r + self.beta) + self.gamma

    def resource_for(self, batch: int, budget_s: float) -> float | None:
        """The least resource r with `T(batch, r) <= budget_s` (the reference's inverse
        `λBα / (T - γ - λBβ)`, before rounding up to a real config); None when no r is enough,
        i.e. when the serial part alone `λBβ + γ` already reaches the budget."""
        room = budget_s - self.gamma - self.lam * batch * self.beta
        if room <= 0.0:
            return None
        return self.lam * batch * self.alpha / room

    def max_batch(self, r: float, budget_s: float) -> int:
        """Largest batch that `r` serves within `budget_s` (0 when not even one fits)."""
        per_request = self.lam * (self.alpha / r + self.beta)
        room = budget_s - self.gamma
        if room < 0.0:
            return 0
        most = 2**31 - 1
        if per_request <= 0.0 or not room / per_request < most:
            return most
        b = math.floor(room / per_request)
        # agree with latency() at the boundary, where the division and it may round apart
        while b > 0 and self.latency(b, r) > budget_s:
            b -= 1
        for _ in range(2):
            if self.latency(b + 1, r) > budget_s:
                break
            b += 1
        return b

    @classmethod
    def from_unconstrained_fit(
        cls, lam: float, alpha: float, beta: float, gamma: float, r_ref: float
    ) -> InferenceModel:
        """Make an unconstrained fit physical while keeping `T(1, r_ref)` exactly.

        Only the products λα and λβ enter T, so a negative λ is folded into α and β; a
        product that is still negative (latency rising with r, or falling with B) is set to 0
        and γ is re-solved so the single-request latency at `r_ref` is unchanged. Worked
        example, the reference's imagerecognition CPU fit (1.104, 0.04838, -0.01543, 0.225):
        λβ = -0.01703 becomes 0 and γ = 0.225 - 0.01703 = 0.20797, so T(1, 1 core) stays 0.261 s.
        """
        a, b = lam * alpha, lam * beta
        t_ref = a / r_ref + b + gamma
        a, b = max(a, 0.0), max(b, 0.0)
        new_gamma = t_ref - a / r_ref - b
        if not new_gamma > 0.0:
            raise ProfileError(
                f"inference fit ({lam}, {alpha}, {beta}, {gamma}) gives T(1, {r_ref:g}) = {t_ref:.4g} s; "
                "it cannot be clamped to a positive model, refit it with bounds"
            )
        scale = abs(lam) if lam != 0.0 else 1.0
        return cls(scale, a / scale, b / scale, new_gamma)


@dataclass(frozen=True, slots=True)
class InitPhase:
    """One init phase (container start, runtime import, model load, GPU transfer …), normal."""

    name: str
    mu: float
    sigma: float

    def __post_init__(self) -> None:
        if not (
            math.isfinite(self.mu) and self.mu >= 0.0 and math.isfinite(self.sigma) and self.sigma >= 0.0
        ):
            raise ProfileError(f"init.{self.name}: mu and sigma must be finite and >= 0")


@dataclass(frozen=True, slots=True)
class InitModel:
    """Init (cold-start) time as independent normal phases; the planner uses `bound(k)`."""

    phases: tuple[InitPhase, ...]

    @property
    def mean(self) -> float:
        return sum(p.mu for p in self.phases)

    @property
    def std(self) -> float:
        """Independent phases: variances add, so σ_total = sqrt(Σ σ²), not Σ σ."""
        return math.sqrt(sum(p.sigma * p.sigma for p in self.phases))

    def bound(self, k: float = DEFAULT_K_SIGMA) -> float:
        """μ + kσ: how long before its deadline an instance must be started to be ready."""
        return self.mean + k * self.std

    @classmethod
    def single(cls, mu: float, sigma: float, name: str = "cold_start") -> InitModel:
        return cls((InitPhase(name, mu, sigma),))


@dataclass(frozen=True, slots=True)
class FunctionProfile:
    """What the planner knows about one function's model on one hardware kind."""

    model: str
    kind: Kind
    inference: InferenceModel
    init: InitModel
    cs_extra: float = 0.0
    """Extra latency of an instance's first request (lazy init, kernel warm-up), seconds."""

    def warm_latency(self, config: HardwareConfig, batch: int = 1) -> float:
        """Planned stage latency on `config`: inference plus the first-request extra.

        The extra is always included: a pre-warmed instance has not served yet, and the plan
        cannot know which request an instance serves first, so this is the safe reading (it is
        also the reference's)."""
        return self.inference.latency(batch, config.resource) + self.cs_extra


OBSERVED_INIT_WINDOW = 20
"""Starts per (model, kind) that `ObservedInits` remembers: recent enough to follow the host's
load, enough for a spread."""
OBSERVED_INIT_MIN = 3
"""Starts it needs before it widens a profile's init."""


class ObservedInits:
    """How long this host's recent starts took, start command to ready, per (model, kind).

    A profile's init is measured one start at a time on an idle host. Under traffic, starts
    share the cores with warm inference and with each other (and wait for a start slot), so
    they take longer: text generation's profiled init of 3.8 s (μ + 3σ) took 4.0-5.8 s in the
    demo, and most pre-warms timed by the profile were ready only after their requests came.
    `widen` plans with what the host did instead, where that is longer."""

    def __init__(self, window: int = OBSERVED_INIT_WINDOW, min_samples: int = OBSERVED_INIT_MIN) -> None:
        self.window = window
        self.min_samples = min_samples
        self.samples: dict[tuple[str, Kind], list[float]] = {}

    def record(self, model: str, kind: Kind, seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds >= 0.0):
            return
        seen = self.samples.setdefault((model, kind), [])
        seen.append(seconds)
        del seen[: -self.window]

    def widen(self, profile: FunctionProfile) -> FunctionProfile:
        """`profile` with its init covering the observed starts: where their mean m and spread
        s give m + kσ above the profile's bound for any k (m > μ or s > σ), an extra phase
        "observed" of μ' = max(0, m - μ) and σ' = sqrt(max(0, s² - σ²)) makes the init's mean
        max(μ, m) and its σ max(σ, s). The profile's own init is never shortened: a quiet
        spell does not make the next start under load faster."""
        seen = self.samples.get((profile.model, profile.kind))
        if seen is None or len(seen) < self.min_samples:
            return profile
        n = len(seen)
        m = sum(seen) / n
        s2 = sum((x - m) ** 2 for x in seen) / (n - 1)
        mu, sigma = profile.init.mean, profile.init.std
        extra_mu = max(0.0, m - mu)
        extra_sigma = math.sqrt(max(0.0, s2 - sigma * sigma))
        if extra_mu == 0.0 and extra_sigma == 0.0:
            return profile
        init = InitModel((*profile.init.phases, InitPhase("observed", extra_mu, extra_sigma)))
        return replace(profile, init=init)


FunctionProfiles = Mapping[str, FunctionProfile]
"""One function's profiles, keyed by config name or by kind ("cpu" / "gpu"); a config-name
key wins, so a profiler may store a per-config measurement beside the per-kind fit."""


def profile_for(profiles: FunctionProfiles, config: HardwareConfig) -> FunctionProfile | None:
    """The profile that applies to `config`, or None (the config is then not a candidate)."""
    found = profiles.get(config.name)
    if found is None:
        found = profiles.get(config.kind.value)
    if found is not None and found.kind is not config.kind:
        raise ProfileError(f"profile for {config.name!r} is a {found.kind.value} profile")
    return found


def latency_on(profiles: FunctionProfiles, config: HardwareConfig, batch: int = 1) -> float | None:
    """A function's planned latency on a concrete config, or None without a profile for it."""
    p = profile_for(profiles, config)
    return None if p is None else p.warm_latency(config, batch)


# --- the packaged reference functions ---------------------------------------------------------


def _float(doc: Mapping[str, Any], key: str, where: str) -> float:
    try:
        return float(doc[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"{where}.{key}: missing or not a number") from exc


def parse_profile(model: str, kind: Kind, doc: Mapping[str, Any], where: str) -> FunctionProfile:
    """One kind's entry of reference_functions.yaml (the format its header describes)."""
    inf = doc.get("inference")
    init = doc.get("init")
    if not isinstance(inf, Mapping):
        raise ProfileError(f"{where}.inference: missing")
    if not isinstance(init, Mapping) or not init:
        raise ProfileError(f"{where}.init: missing")
    phases = []
    for name, pair in init.items():
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ProfileError(f"{where}.init.{name}: must be [mu, sigma]")
        phases.append(InitPhase(str(name), float(pair[0]), float(pair[1])))
    cs_extra = float(doc.get("cs_extra", 0.0))
    if not (math.isfinite(cs_extra) and cs_extra >= 0.0):
        raise ProfileError(f"{where}.cs_extra: must be >= 0")
    try:
        model_ = InferenceModel(
            *(_float(inf, k, f"{where}.inference") for k in ("lam", "alpha", "beta", "gamma"))
        )
    except ProfileError as exc:
        raise ProfileError(f"{where}: {exc}") from exc
    return FunctionProfile(model, kind, model_, InitModel(tuple(phases)), cs_extra)


def load_reference_profiles() -> dict[str, dict[str, FunctionProfile]]:
    """The reference's 16 functions: model name -> {"cpu": profile, "gpu": profile}."""
    text = resources.files("smiless.data").joinpath("reference_functions.yaml").read_text()
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("functions"), dict):
        raise ProfileError("reference_functions.yaml: expected a mapping with 'functions'")
    out: dict[str, dict[str, FunctionProfile]] = {}
    for model, kinds in doc["functions"].items():
        out[model] = {
            kind.value: parse_profile(model, kind, kinds[kind.value], f"functions.{model}.{kind.value}")
            for kind in Kind
            if kind.value in kinds
        }
    return out


def reference_fit(model: str, kind: Kind) -> tuple[float, float, float, float]:
    """The reference's raw (unclamped) fit, for tests and for showing what the clamp changed."""
    text = resources.files("smiless.data").joinpath("reference_functions.yaml").read_text()
    raw = yaml.safe_load(text)["functions"][model][kind.value]["fit"]
    return (float(raw[0]), float(raw[1]), float(raw[2]), float(raw[3]))
