"""The app spec: file format, conversion to and from protobuf, and the one validator.

File format (YAML or JSON):

    name: image-query
    sla: 4s                  # seconds as a number, or "4s" / "500ms"
    description: optional text
    functions:
      - {name: ir, model: imagerecognition}
      - {name: bert, model: distilbert}
      # a user model: a TorchScript file with its contract inside (see smiless/zoo.py)
      # - {name: mine, model: "torchscript:/abs/path/model.pt"}
    edges:
      - [ir, bert]           # or {source: ir, target: bert}

`validate()` is the only place an app is checked; the gateway calls it on RegisterApp
and the CLI before sending. Every error names the offending field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from smiless import zoo
from smiless.dag import Dag, DagError
from smiless.v1 import common_pb2

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class AppSpecError(ValueError):
    """An invalid app spec; `field` names the offending field (e.g. `edges[2].target`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    model: str


@dataclass(frozen=True)
class AppSpec:
    """The user's app: name, SLA, the models it runs, and its DAG (`dag`, the one structure)."""

    name: str
    sla_s: float
    functions: tuple[FunctionSpec, ...]
    edges: tuple[tuple[str, str], ...] = ()
    description: str = ""
    _dag: Dag | None = field(default=None, compare=False, repr=False)

    @property
    def dag(self) -> Dag:
        """The functions' DAG (built once; AppSpecError naming the field if there is none)."""
        if self._dag is None:
            try:
                dag = Dag.of(self.function_names, self.edges)
            except DagError as exc:
                raise AppSpecError(exc.field, exc.message) from exc
            object.__setattr__(self, "_dag", dag)
            return dag
        return self._dag

    @property
    def function_names(self) -> list[str]:
        return [f.name for f in self.functions]

    def model_of(self, function: str) -> str:
        return next(f.model for f in self.functions if f.name == function)

    def parents(self, function: str) -> list[str]:
        return list(self.dag.parents[function])

    def children(self, function: str) -> list[str]:
        return list(self.dag.children[function])

    @property
    def entry(self) -> str:
        return self.dag.roots[0]

    @property
    def leaves(self) -> list[str]:
        return list(self.dag.leaves)

    def topological_order(self) -> list[str]:
        return list(self.dag.functions)


def validate(spec: AppSpec) -> AppSpec:
    """Check the spec; return it (with its DAG built) or raise AppSpecError."""
    if not NAME_RE.match(spec.name):
        raise AppSpecError("name", f"{spec.name!r} must be 1-63 lowercase letters, digits or '-'")
    if not spec.sla_s > 0:
        raise AppSpecError("sla", f"must be positive, got {spec.sla_s:g} s")
    if not spec.functions:
        raise AppSpecError("functions", "an app needs at least one function")
    seen: set[str] = set()
    for i, fn in enumerate(spec.functions):
        if not NAME_RE.match(fn.name):
            raise AppSpecError(
                f"functions[{i}].name", f"{fn.name!r} must be lowercase letters, digits or '-'"
            )
        if fn.name in seen:
            raise AppSpecError(f"functions[{i}].name", f"duplicate function name {fn.name!r}")
        seen.add(fn.name)
        try:
            zoo.resolve(fn.model)  # a built-in model, or a readable TorchScript file with a contract
        except zoo.ZooError as exc:
            raise AppSpecError(f"functions[{i}].model", str(exc)) from exc
    try:
        dag = Dag.of(spec.function_names, spec.edges, merge_duplicates=False)
    except DagError as exc:
        raise AppSpecError(exc.field, exc.message) from exc
    if len(dag.roots) != 1:
        raise AppSpecError(
            "edges", f"several roots ({', '.join(dag.roots)}); an app has exactly one entry function"
        )
    for i, fn in enumerate(spec.functions):
        parents = dag.parents[fn.name]
        if parents:
            child = zoo.MODELS[fn.model]
            why = zoo.check_edge([zoo.MODELS[spec.model_of(p)] for p in parents], child)
            if why:
                raise AppSpecError(f"functions[{i}]", f"{fn.name}: {why}")
    return replace(spec, _dag=dag)


# --- files ---------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*$")


def _parse_sla(value: Any) -> float:
    if isinstance(value, bool):
        raise AppSpecError("sla", "must be a duration such as 4, '4s' or '500ms'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            number = float(m.group(1))
            return number / 1000.0 if m.group(2) == "ms" else number
        if value.strip().startswith("-"):
            raise AppSpecError("sla", f"must be positive, got {value!r}")
    raise AppSpecError("sla", f"{value!r} is not a duration such as 4, '4s' or '500ms'")


def from_dict(doc: Any) -> AppSpec:
    """Build an (unvalidated) AppSpec from a parsed YAML/JSON document."""
    if not isinstance(doc, dict):
        raise AppSpecError("(root)", "an app spec is a mapping with name, sla, functions, edges")
    unknown = set(doc) - {"name", "sla", "description", "functions", "edges"}
    if unknown:
        raise AppSpecError(sorted(unknown)[0], "unknown field")
    if "name" not in doc:
        raise AppSpecError("name", "missing")
    if "sla" not in doc:
        raise AppSpecError("sla", "missing")
    functions = doc.get("functions")
    if not isinstance(functions, list):
        raise AppSpecError("functions", "must be a list of {name, model}")
    fns: list[FunctionSpec] = []
    for i, f in enumerate(functions):
        if (
            not isinstance(f, dict)
            or not isinstance(f.get("name"), str)
            or not isinstance(f.get("model"), str)
        ):
            raise AppSpecError(f"functions[{i}]", "must be a mapping with string name and model")
        fns.append(FunctionSpec(f["name"], f["model"]))
    edges_doc = doc.get("edges") or []
    if not isinstance(edges_doc, list):
        raise AppSpecError("edges", "must be a list of [source, target] pairs")
    edges: list[tuple[str, str]] = []
    for i, e in enumerate(edges_doc):
        if isinstance(e, dict) and isinstance(e.get("source"), str) and isinstance(e.get("target"), str):
            edges.append((e["source"], e["target"]))
        elif isinstance(e, list | tuple) and len(e) == 2 and all(isinstance(x, str) for x in e):
            edges.append((e[0], e[1]))
        else:
            raise AppSpecError(f"edges[{i}]", "must be [source, target] or {source, target}")
    return AppSpec(
        str(doc["name"]), _parse_sla(doc["sla"]), tuple(fns), tuple(edges), str(doc.get("description", ""))
    )


def load_file(path: str | Path) -> AppSpec:
    """Read a YAML or JSON spec file (validated)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise AppSpecError("(file)", f"cannot read {p}: {exc.strerror}") from exc
    try:
        doc = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise AppSpecError(
            "(file)", f"{p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    return validate(from_dict(doc))


def to_dict(spec: AppSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "sla": f"{spec.sla_s:g}s",
        "description": spec.description,
        "functions": [{"name": f.name, "model": f.model} for f in spec.functions],
        "edges": [[s, t] for s, t in spec.edges],
    }


# --- protobuf ------------------------------------------------------------------------------


def to_proto(spec: AppSpec) -> common_pb2.AppSpec:
    msg = common_pb2.AppSpec(name=spec.name, description=spec.description)
    msg.sla.FromNanoseconds(round(spec.sla_s * 1e9))
    msg.functions.extend(common_pb2.FunctionSpec(name=f.name, model=f.model) for f in spec.functions)
    msg.edges.extend(common_pb2.Edge(source=s, target=t) for s, t in spec.edges)
    return msg


def from_proto(msg: common_pb2.AppSpec) -> AppSpec:
    """Convert without validating (call validate())."""
    return AppSpec(
        name=msg.name,
        sla_s=msg.sla.ToNanoseconds() / 1e9,
        functions=tuple(FunctionSpec(f.name, f.model) for f in msg.functions),
        edges=tuple((e.source, e.target) for e in msg.edges),
        description=msg.description,
    )


EXAMPLES_DIR = Path(__file__).parent / "examples"


def example_paths() -> list[Path]:
    return sorted(EXAMPLES_DIR.glob("*.yaml"))
