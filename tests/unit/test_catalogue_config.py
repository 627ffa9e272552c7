from __future__ import annotations

from pathlib import Path

import pytest

from smiless.catalogue import CatalogueError, Kind, load_catalogue, mark_runnable, parse_catalogue
from smiless.config import Settings


def test_default_catalogue_prices() -> None:
    cat = load_catalogue()
    assert [n for n in cat if n.startswith("cpu")] == ["cpu-1", "cpu-2", "cpu-4", "cpu-8", "cpu-16"]
    assert len([n for n in cat if n.startswith("gpu")]) == 10
    assert cat["cpu-4"].price_per_hour == pytest.approx(4 * 0.034)
    assert cat["gpu-10"].price_per_hour == pytest.approx(0.306)
    assert cat["gpu-30"].resource == 30 and cat["cpu-8"].resource == 8
    assert cat["gpu-100"].kind is Kind.GPU


def test_runnable_marks_what_this_host_lacks() -> None:
    cat = mark_runnable(load_catalogue(), host_cores=2, gpu_available=False)
    assert cat["cpu-2"].runnable and not cat["cpu-4"].runnable and not cat["gpu-10"].runnable
    assert len(cat) == 15  # nothing dropped: planning still sees every config


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "top-level"),
        ({"cpu_price_per_core_hour": 1, "gpu_price_per_hour": 1, "configs": []}, "empty"),
        (
            {
                "cpu_price_per_core_hour": 1,
                "gpu_price_per_hour": 1,
                "configs": [{"name": "x", "kind": "tpu"}],
            },
            r"configs\[0\]",
        ),
        (
            {
                "cpu_price_per_core_hour": 1,
                "gpu_price_per_hour": 1,
                "configs": [{"name": "x", "kind": "cpu"}, {"name": "x", "kind": "cpu"}],
            },
            "duplicate",
        ),
        (
            {
                "cpu_price_per_core_hour": 1,
                "gpu_price_per_hour": 1,
                "configs": [{"name": "g", "kind": "gpu", "gpu_share": 150}],
            },
            "gpu_share",
        ),
    ],
)
def test_bad_catalogues(doc: dict[str, object], message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(doc)


def test_catalogue_file_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "nope.yaml")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMILESS_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SMILESS_GATEWAY_ADDR", "127.0.0.1:6000")
    s = Settings()
    assert s.redis_url == "redis://127.0.0.1:1/0"
    assert s.service_port("gateway") == 6000
    assert Settings(grace_period_s=3).grace_period_s == 3


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("SMILESS_GRACE_PERIOD_S", "-1")
    with pytest.raises(ValidationError):
        Settings()


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"`SMILESS_{n.upper()}`" not in readme]
    assert not missing, f"README's configuration table lacks {missing}"
