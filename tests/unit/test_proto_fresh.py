"""The committed generated code must match what protoc makes from protos/ now."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _genproto() -> object:
    spec = importlib.util.spec_from_file_location("genproto", ROOT / "scripts" / "genproto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generated = _genproto().generate(tmp_path)  # type: ignore[attr-defined]
    committed = ROOT / "smiless" / "v1"
    names = {p.name for p in generated}
    assert names == {p.name for p in committed.iterdir() if p.is_file()}, "run scripts/genproto.py"
    stale = [
        n
        for n in sorted(names)
        if (tmp_path / "smiless" / "v1" / n).read_bytes() != (committed / n).read_bytes()
    ]
    assert not stale, f"stale generated files (run python scripts/genproto.py): {stale}"


def test_buf_lint_is_clean() -> None:
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    if not Path(buf).exists():
        pytest.fail("buf is not installed (pip install buf-bin)")
    out = subprocess.run([buf, "lint"], cwd=ROOT / "protos", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
