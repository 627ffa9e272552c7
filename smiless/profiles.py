"""Profiles between their stored form (`smiless.v1.Profile`) and the policy's
`FunctionProfile`: the one adapter both the profiler and the optimizer use."""

from __future__ import annotations

from smiless.catalogue import Kind
from smiless.policy.profile import FunctionProfile, InferenceModel, InitModel, InitPhase
from smiless.protoutil import get_seconds, set_seconds
from smiless.v1 import common_pb2, profiler_pb2

KIND_TO_PROTO = {Kind.CPU: common_pb2.HARDWARE_KIND_CPU, Kind.GPU: common_pb2.HARDWARE_KIND_GPU}
KIND_FROM_PROTO = {v: k for k, v in KIND_TO_PROTO.items()}


def init_to_proto(init: InitModel) -> list[profiler_pb2.PhaseDistribution]:
    out = []
    for p in init.phases:
        d = profiler_pb2.PhaseDistribution(name=p.name)
        set_seconds(d.mean, p.mu)
        set_seconds(d.stddev, p.sigma)
        out.append(d)
    return out


def inference_to_proto(model: InferenceModel, mape: float) -> profiler_pb2.InferenceModel:
    return profiler_pb2.InferenceModel(
        lam=model.lam, alpha=model.alpha, beta=model.beta, gamma=model.gamma, mape=mape
    )


def from_proto(p: profiler_pb2.Profile) -> FunctionProfile:
    """The planner's view of a stored profile."""
    inf = p.inference
    phases = tuple(InitPhase(d.name, get_seconds(d.mean), get_seconds(d.stddev)) for d in p.init_phases)
    return FunctionProfile(
        model=p.model,
        kind=KIND_FROM_PROTO[p.kind],
        inference=InferenceModel(inf.lam, inf.alpha, inf.beta, inf.gamma),
        init=InitModel(phases),
    )
