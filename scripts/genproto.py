"""Generate the Python code and typed stubs for protos/smiless/v1 into a target root.

The generated modules are committed under smiless/v1/ so an install needs no protoc;
tests/unit/test_proto_fresh.py regenerates into a temporary folder and fails when the
committed files are stale. Run: python scripts/genproto.py [OUT_ROOT]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def generate(out_root: Path) -> list[Path]:
    """Run protoc (with the mypy plugins) and return the generated files."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "smiless" / "v1").glob("*.proto"))
    out = out_root / "smiless" / "v1"
    out.mkdir(parents=True, exist_ok=True)
    include = Path(grpc_tools.__file__).parent / "_proto"
    # protoc finds the mypy plugins on PATH; they sit beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = out / "__init__.py"
    init.write_text('"""Generated gRPC code for the smiless.v1 contracts (see protos/)."""\n')
    return sorted(p for p in out.iterdir() if p.is_file())


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    for path in generate(target):
        print(path.relative_to(target))
