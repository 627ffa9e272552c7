#!/usr/bin/env bash
# Install what smiless needs on a Debian/Ubuntu machine: redis-server and a virtual
# environment (.venv) with smiless, its worker runtime (torch) and its dev tools.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "setup: installing ${missing[*]} (apt)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing smiless into .venv"
.venv/bin/python -m pip install -q -e '.[dev]'
echo "setup: done ($(.venv/bin/smiless --help >/dev/null && echo 'smiless CLI ready'))"
