"""What the simulator simulates: apps (a DAG of functions with profiles and an SLA) and the
noise of the world around the model (how far init and inference times stray from it).

Pure data. The profiles are the planner's own (`smiless.policy.profile`), so the simulator and
the planner disagree only by the noise drawn here; with `Noise.exact()` they agree exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from smiless import appspec
from smiless.catalogue import HardwareConfig
from smiless.dag import Dag
from smiless.policy.profile import FunctionProfile, InitModel, load_reference_profiles, profile_for

FunctionProfiles = Mapping[str, FunctionProfile]


@dataclass(frozen=True)
class SimApp:
    """One app as the simulator runs it. `template` names the DAG + profiles it was built from:
    apps with the same template and SLA plan alike, so planners may share a plan cache."""

    name: str
    sla_s: float
    dag: Dag
    profiles: Mapping[str, FunctionProfiles]
    """function -> its profiles by kind ("cpu"/"gpu") or config name (as the planner takes them)."""
    template: str = ""

    @property
    def functions(self) -> tuple[str, ...]:
        return self.dag.functions

    @property
    def entry(self) -> str:
        return self.dag.roots[0]

    def with_sla(self, sla_s: float) -> SimApp:
        if not sla_s > 0:
            raise ValueError(f"sla must be positive, got {sla_s!r}")
        return SimApp(self.name, sla_s, self.dag, self.profiles, self.template)

    def renamed(self, name: str) -> SimApp:
        return SimApp(name, self.sla_s, self.dag, self.profiles, self.template)


def app_from_spec(spec: appspec.AppSpec, sla_s: float | None = None) -> SimApp:
    """A validated app spec whose models are in the reference catalogue
    (smiless/data/reference_functions.yaml): the simulator has no other profiles to use."""
    ref = load_reference_profiles()
    missing = sorted({f.model for f in spec.functions if f.model not in ref})
    if missing:
        raise ValueError(f"functions: no reference profile for model(s) {', '.join(missing)}")
    profiles = {f.name: ref[f.model] for f in spec.functions}
    return SimApp(spec.name, spec.sla_s if sla_s is None else sla_s, spec.dag, profiles, spec.name)


REFERENCE_APPS: tuple[str, ...] = ("voice-assistant", "amber-alert", "image-query")
"""The three reference apps (reference §6.2), shipped in smiless/examples/."""


def load_app(name_or_path: str, sla_s: float | None = None) -> SimApp:
    """A reference app by name (`image-query`) or an app-spec file, validated by `appspec`."""
    path = Path(name_or_path)
    if not path.exists():
        path = appspec.EXAMPLES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            known = ", ".join(REFERENCE_APPS)
            raise ValueError(f"app: {name_or_path!r} is neither a file nor a reference app ({known})")
    return app_from_spec(appspec.validate(appspec.load_file(path)), sla_s)


@dataclass(frozen=True)
class Noise:
    """How the simulated world departs from the profiles.

    Init time: each phase is drawn from its normal N(μ, σ), clipped below at max(0, μ - 3σ) (an
    init cannot be arbitrarily fast; the clip is what the lower bound may rely on). With
    `init_draws=False` every init takes exactly μ.

    Inference time: the model's T(B, r) times a factor drawn from N(1, cv), clipped to
    [max(0.1, 1 - 3cv), 1 + 3cv]; cv = 0 makes it exact. The first request an instance serves
    also pays the profile's `cs_extra`, as the planner assumes.
    """

    inference_cv: float = 0.05
    init_draws: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.inference_cv) and self.inference_cv >= 0.0):
            raise ValueError(f"noise.inference_cv must be >= 0, got {self.inference_cv!r}")

    @classmethod
    def exact(cls) -> Noise:
        """No noise: every init is μ, every inference is the model's."""
        return cls(0.0, False)

    @property
    def inference_floor(self) -> float:
        """The smallest factor an inference time can be drawn with."""
        return max(0.1, 1.0 - 3.0 * self.inference_cv) if self.inference_cv > 0 else 1.0

    def init_floor(self, init: InitModel) -> float:
        """The shortest init this noise can draw for `init`."""
        if not self.init_draws:
            return init.mean
        return sum(max(0.0, p.mu - 3.0 * p.sigma) for p in init.phases)

    def draw_init(self, init: InitModel, rng: random.Random) -> float:
        if not self.init_draws:
            return init.mean
        total = 0.0
        for p in init.phases:
            total += max(max(0.0, p.mu - 3.0 * p.sigma), rng.gauss(p.mu, p.sigma) if p.sigma > 0 else p.mu)
        return total

    def draw_factor(self, rng: random.Random) -> float:
        cv = self.inference_cv
        if cv <= 0.0:
            return 1.0
        return min(1.0 + 3.0 * cv, max(self.inference_floor, rng.gauss(1.0, cv)))


def profile_on(app: SimApp, function: str, config: HardwareConfig) -> FunctionProfile | None:
    """The profile of `function` that applies on `config` (None: it cannot run there)."""
    return profile_for(app.profiles[function], config)
