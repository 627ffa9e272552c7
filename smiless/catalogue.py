"""The hardware catalogue: named resource shapes with unit prices.

Pure data and parsing; whether a config can run *here* is decided by the caller
(`mark_runnable`) from facts it gathered (host cores, GPU runtime), so planning and
simulation see the same catalogue on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class Kind(StrEnum):
    CPU = "cpu"
    GPU = "gpu"


@dataclass(frozen=True)
class HardwareConfig:
    """One hardware config. `resource` is what the inference model's `r` means:
    cores for CPU configs, GPU share in percent (10..100) for GPU configs."""

    name: str
    kind: Kind
    cores: float
    gpu_share: float
    memory_mb: int
    price_per_hour: float
    runnable: bool = True

    @property
    def resource(self) -> float:
        return self.gpu_share if self.kind is Kind.GPU else self.cores

    @property
    def price_per_second(self) -> float:
        return self.price_per_hour / 3600.0


class CatalogueError(ValueError):
    pass


def parse_catalogue(doc: dict[str, Any]) -> dict[str, HardwareConfig]:
    """Build the catalogue from its YAML document; prices come from the per-unit rates
    unless a config names its own `price_per_hour`."""
    try:
        core_price = float(doc["cpu_price_per_core_hour"])
        gpu_price = float(doc["gpu_price_per_hour"])
        entries = doc["configs"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogueError(f"catalogue: missing or invalid top-level field: {exc}") from exc
    out: dict[str, HardwareConfig] = {}
    for i, entry in enumerate(entries):
        where = f"configs[{i}]"
        try:
            name = str(entry["name"])
            kind = Kind(entry["kind"])
            cores = float(entry.get("cores", 1))
            share = float(entry.get("gpu_share", 0))
            memory = int(entry.get("memory_mb", 4096))
        except (KeyError, ValueError, TypeError) as exc:
            raise CatalogueError(f"catalogue: {where}: {exc}") from exc
        if name in out:
            raise CatalogueError(f"catalogue: {where}.name: duplicate config {name!r}")
        if cores <= 0:
            raise CatalogueError(f"catalogue: {where}.cores must be positive")
        if kind is Kind.GPU and not 0 < share <= 100:
            raise CatalogueError(f"catalogue: {where}.gpu_share must be in (0, 100]")
        default_price = gpu_price * share / 100.0 if kind is Kind.GPU else core_price * cores
        price = float(entry.get("price_per_hour", default_price))
        out[name] = HardwareConfig(name, kind, cores, share if kind is Kind.GPU else 0.0, memory, price)
    if not out:
        raise CatalogueError("catalogue: configs is empty")
    return out


def load_catalogue(path: str | Path | None = None) -> dict[str, HardwareConfig]:
    """Load a catalogue file, or the packaged default when `path` is None."""
    if path is None:
        text = resources.files("smiless.data").joinpath("hardware.yaml").read_text()
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise CatalogueError(f"catalogue: cannot read {path}: {exc.strerror}") from exc
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise CatalogueError("catalogue: the file must hold a mapping")
    return parse_catalogue(doc)


def mark_runnable(
    catalogue: dict[str, HardwareConfig], host_cores: int, gpu_available: bool
) -> dict[str, HardwareConfig]:
    """Flag configs the local engine cannot provide; they stay for planning."""
    return {
        name: replace(
            cfg,
            runnable=cfg.cores <= host_cores and (cfg.kind is Kind.CPU or gpu_available),
        )
        for name, cfg in catalogue.items()
    }
