#!/usr/bin/env bash
# Build smiless's container images with no container registry (docs/design.md §6):
#   1. smiless-base:bookworm   Debian bookworm (minbase) + python3 3.11.2, python3-venv and
#                              ca-certificates, made by debootstrap and `docker import`.
#                              Skipped when the tag exists and was made by the same recipe.
#   2. var/wheels/             every Python wheel the worker needs, downloaded on the host for
#                              linux x86_64 / CPython 3.11 (torch: the 2.13.0 CPU wheel).
#                              Skipped when the requirements did not change since.
#   3. smiless-worker:latest   images/worker/Dockerfile on top of (1), pip --no-index from (2);
#                              docker's layer cache makes a rebuild after a code change cheap.
# Then a smoke test: the image imports torch, grpc, transformers and smiless.
#
# Needs a running engine (scripts/install-docker.sh) and root (debootstrap). Idempotent.
#
#   scripts/build-images.sh [--base-only] [--rebuild-base] [--refresh-wheels] [--no-cache]
#
# Environment: SMILESS_BUILDER (buildkit|classic; default: buildkit where reachable),
# SMILESS_BASE_IMAGE (smiless-base:bookworm), SMILESS_WORKER_IMAGE
# (smiless-worker:latest), SMILESS_DEBIAN_MIRROR (http://deb.debian.org/debian),
# SMILESS_DEBIAN_SECURITY_MIRROR (http://deb.debian.org/debian-security),
# SMILESS_BASE_UPGRADE (1: apply bookworm-updates/-security to the base; 0: skip, ~40 s less).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${SMILESS_BASE_IMAGE:-smiless-base:bookworm}"
WORKER_IMAGE="${SMILESS_WORKER_IMAGE:-smiless-worker:latest}"
MIRROR="${SMILESS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SMILESS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
BASE_UPGRADE="${SMILESS_BASE_UPGRADE:-1}"
WHEELS="$REPO/var/wheels"
WORK="$REPO/var/build"

base_only=0 rebuild_base=0 refresh_wheels=0 no_cache=()
for arg in "$@"; do
  case "$arg" in
    --base-only) base_only=1 ;;
    --rebuild-base) rebuild_base=1 ;;
    --refresh-wheels) refresh_wheels=1 ;;
    --no-cache) no_cache=(--no-cache) ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

say() { printf '[build-images] %s\n' "$*" >&2; }
die() { printf '[build-images] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s%N; }
secs() { local ms=$(( ($(now) - $1) / 1000000 )); printf '%d.%01ds' $((ms / 1000)) $((ms % 1000 / 100)); }
T_ALL=$(now)
declare -a TIMINGS=()

timeout 15 docker info >/dev/null 2>&1 \
  || die "the Docker engine does not answer 'docker info': run scripts/install-docker.sh first"

# --- 1. base image -------------------------------------------------------------------------
# The recipe's hash is stored as a label: a changed recipe rebuilds an existing tag.
BASE_SUITE=bookworm
BASE_INCLUDE=python3,python3-venv,ca-certificates
RECIPE_VERSION=1
RECIPE_HASH=$(printf '%s|%s|%s|%s|%s' "$RECIPE_VERSION" "$BASE_SUITE" "$BASE_INCLUDE" "$BASE_UPGRADE" \
  "$(sed -n '/^build_base()/,/^}/p' "$0")" | sha256sum | cut -c1-16)

umount_under() {  # unmount whatever debootstrap/chroot left mounted below $1, deepest first
  local root="$1" m
  [ -d "$root" ] || return 0
  for m in $(awk -v r="$root" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}

build_base() {
  local root="$WORK/base-rootfs"
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing: run scripts/install-docker.sh"
  [ "$(id -u)" -eq 0 ] || die "building the base image needs root (debootstrap, chroot)"
  umount_under "$root"
  rm -rf "$root"
  mkdir -p "$root"
  trap 'umount_under "'"$root"'"' EXIT

  local t=$(now)
  say "debootstrap $BASE_SUITE (minbase + $BASE_INCLUDE) from $MIRROR"
  debootstrap --variant=minbase --include="$BASE_INCLUDE" "$BASE_SUITE" "$root" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  say "debootstrap took $(secs "$t")"

  cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $BASE_SUITE main
deb $MIRROR $BASE_SUITE-updates main
deb $SECURITY_MIRROR $BASE_SUITE-security main
EOF
  # As Debian's official images do: images never keep apt's caches, docs, man pages or
  # translations, now and in any later `apt-get install` inside derived images.
  cat >"$root/etc/dpkg/dpkg.cfg.d/smiless-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat >"$root/etc/apt/apt.conf.d/smiless-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  if [ "$BASE_UPGRADE" = 1 ]; then
    t=$(now)
    say "applying $BASE_SUITE-updates and -security to the base"
    chroot "$root" /bin/sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get -y -q upgrade' \
      >>"$WORK/debootstrap.log" 2>&1 \
      || { tail -n 30 "$WORK/debootstrap.log" >&2; die "apt-get upgrade in the base failed"; }
    say "upgrade took $(secs "$t")"
  fi
  umount_under "$root"

  # Trim: apt lists and caches, docs (copyright files kept), man, info, translations, logs.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
         "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/* \
         "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  : >"$root/etc/resolv.conf"   # the engine provides these at run time
  : >"$root/etc/hostname"
  : >"$root/etc/machine-id" 2>/dev/null || true

  t=$(now)
  say "docker import -> $BASE_IMAGE ($(du -sh "$root" | cut -f1) on disk)"
  tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.smiless.base-recipe=$RECIPE_HASH" \
    --change "LABEL org.opencontainers.image.description=\"Debian $BASE_SUITE minbase + python3 (smiless base, debootstrap)\"" \
    --change 'CMD ["python3"]' \
    - "$BASE_IMAGE" >/dev/null
  say "import took $(secs "$t")"
  umount_under "$root"
  rm -rf "$root"
  trap - EXIT
}

have_recipe=$(docker image inspect -f '{{ index .Config.Labels "org.smiless.base-recipe" }}' "$BASE_IMAGE" 2>/dev/null || true)
mkdir -p "$WORK"
if [ "$rebuild_base" = 0 ] && [ "$have_recipe" = "$RECIPE_HASH" ]; then
  say "base image $BASE_IMAGE is up to date (recipe $RECIPE_HASH): skipped"
  TIMINGS+=("base image: cached")
else
  [ -n "$have_recipe" ] && say "base image $BASE_IMAGE has recipe '$have_recipe', want $RECIPE_HASH: rebuilding"
  t=$(now)
  build_base
  TIMINGS+=("base image (debootstrap + import): $(secs "$t")")
fi
docker run --rm "$BASE_IMAGE" python3 -c 'import sys, venv, ssl; assert sys.version_info[:2] == (3, 11)' \
  || die "the base image $BASE_IMAGE does not run python3"

if [ "$base_only" = 1 ]; then
  for line in "${TIMINGS[@]}"; do say "timing: $line"; done
  exit 0
fi

# --- 2. wheels -----------------------------------------------------------------------------
# For Debian bookworm / python:3.11-slim on x86_64: glibc 2.36, so manylinux up to 2_36.
PLATFORM_ARGS=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311)
for v in $(seq 36 -1 17); do PLATFORM_ARGS+=(--platform "manylinux_2_${v}_x86_64"); done
PLATFORM_ARGS+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64
                --platform manylinux1_x86_64 --platform linux_x86_64)
REQS="$REPO/images/worker/requirements.txt"
# pyproject.toml's own dependencies, so that one added there (and not yet pinned in
# requirements.txt) still reaches the image; the Dockerfile installs this file too.
PROJECT_REQS=$(python3 -c '
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$REPO/pyproject.toml") \
  || die "cannot read [project].dependencies from pyproject.toml"
unpinned=$(python3 -c '
import re, sys
name = lambda r: re.split(r"[ <>=!~;\[]", r.strip(), maxsplit=1)[0].lower().replace("_", "-")
pins = {name(l) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
print(" ".join(sorted({name(r) for r in sys.argv[2].splitlines() if r.strip()} - pins)))' "$REQS" "$PROJECT_REQS")
[ -z "$unpinned" ] || say "WARNING: pyproject.toml needs packages not pinned in images/worker/requirements.txt: $unpinned (pin them there)"
WHEELS_HASH=$(cat "$REQS" <(printf '%s\n' "$PROJECT_REQS" "${PLATFORM_ARGS[@]}") | sha256sum | cut -c1-16)

if [ "$refresh_wheels" = 0 ] && [ "$(cat "$WHEELS/.stamp" 2>/dev/null || true)" = "$WHEELS_HASH" ]; then
  say "wheels in var/wheels are up to date ($(find "$WHEELS" -name '*.whl' | wc -l) files): skipped"
  TIMINGS+=("wheels: cached")
else
  t=$(now)
  mkdir -p "$WHEELS"
  rm -f "$WHEELS/.stamp"
  printf '%s\n' "# generated by scripts/build-images.sh from pyproject.toml" "$PROJECT_REQS" >"$WHEELS/project-requirements.txt"
  say "pip download -> var/wheels (torch 2.13.0 CPU from this machine's disk, the rest from PyPI)"
  # Files already in var/wheels are reused; pip lists each wheel as 'Saved' or 'already downloaded'.
  python3 -m pip download --disable-pip-version-check --progress-bar off -d "$WHEELS" \
      "${PLATFORM_ARGS[@]}" -r "$REQS" -r "$WHEELS/project-requirements.txt" >"$WORK/pip-download.log" 2>&1 \
    || { grep -v '^WARNING: Location' "$WORK/pip-download.log" | tail -n 30 >&2; die "pip download failed (log: $WORK/pip-download.log)"; }
  # Never ship a CUDA torch: the multi-GB build would pull nvidia-* wheels with it.
  ls "$WHEELS"/torch-2.13.0+cpu-*.whl >/dev/null 2>&1 || die "pip did not pick the torch 2.13.0 CPU wheel"
  if ls "$WHEELS"/nvidia_* >/dev/null 2>&1; then die "CUDA wheels (nvidia_*) in var/wheels"; fi
  # Drop wheels this download did not want (older pins), so the build context stays small.
  keep=$(grep -oE '(Saved|File was already downloaded) [^ ]+\.whl' "$WORK/pip-download.log" | awk '{print $NF}' | xargs -n1 basename | sort -u)
  for f in "$WHEELS"/*.whl; do
    grep -qxF "$(basename "$f")" <<<"$keep" || { say "removing stale $(basename "$f")"; rm -f "$f"; }
  done
  loose=$(python3 -c '
import os, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pins = {norm(re.split(r"[ <>=!~;\[]", l.strip(), maxsplit=1)[0]) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
got = {norm(f.split("-")[0]) for f in os.listdir(sys.argv[2]) if f.endswith(".whl")}
print(" ".join(sorted(got - pins)))' "$REQS" "$WHEELS")
  [ -z "$loose" ] || say "WARNING: wheels not pinned in images/worker/requirements.txt: $loose (pin them there)"
  echo "$WHEELS_HASH" >"$WHEELS/.stamp"
  TIMINGS+=("wheels (pip download): $(secs "$t")")
fi
say "var/wheels: $(find "$WHEELS" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1)"

# --- 3. worker image -----------------------------------------------------------------------
# Which builder: BuildKit where we can have it, the classic builder otherwise (measured here,
# cold: BuildKit ~60 s, classic ~150 s; the classic builder commits every RUN and COPY --from
# by re-tarring ~1 GB of venv). The engine has BuildKit built in, but the 28.x client in
# /usr/local/bin only reaches it through the buildx plugin, which no registry we reach ships;
# Debian's own 20.10 client (/usr/bin/docker, from docker.io) reaches it with DOCKER_BUILDKIT=1.
# SMILESS_BUILDER=buildkit|classic forces one.
builder="${SMILESS_BUILDER:-}"
build_cmd=()
if [ -z "$builder" ]; then
  if docker buildx version >/dev/null 2>&1; then
    builder=buildkit; build_cmd=(docker build --progress=plain)
  elif [ -x /usr/bin/docker ] && [ "$(/usr/bin/docker version -f '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" = 20 ]; then
    builder=buildkit; build_cmd=(env DOCKER_BUILDKIT=1 /usr/bin/docker build --progress=plain)
  else
    builder=classic
  fi
fi
case "$builder" in
  buildkit)
    if [ "${#build_cmd[@]}" -eq 0 ]; then
      if docker buildx version >/dev/null 2>&1; then build_cmd=(docker build --progress=plain)
      else build_cmd=(env DOCKER_BUILDKIT=1 /usr/bin/docker build --progress=plain); fi
    fi ;;
  classic) build_cmd=(env DOCKER_BUILDKIT=0 docker build) ;;
  *) die "SMILESS_BUILDER must be buildkit or classic, not '$builder'" ;;
esac
# The context is the repo root, filtered by .dockerignore to a few paths.
t=$(now)
say "docker build ($builder) -> $WORKER_IMAGE (FROM $BASE_IMAGE); log: $WORK/worker-build.log"
"${build_cmd[@]}" "${no_cache[@]}" \
    -f "$REPO/images/worker/Dockerfile" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    -t "$WORKER_IMAGE" "$REPO" >"$WORK/worker-build.log" 2>&1 \
  || { tail -n 40 "$WORK/worker-build.log" >&2; die "docker build of $WORKER_IMAGE failed (log: $WORK/worker-build.log)"; }
TIMINGS+=("worker image (docker build, $builder): $(secs "$t")")
# Earlier builds of the worker image, now untagged (their layers stay in the build cache).
docker image prune -f --filter label=org.smiless.image=worker >/dev/null 2>&1 || true

t=$(now)
docker run --rm "$WORKER_IMAGE" python -c 'import torch, grpc, transformers, smiless, redis, yaml, numpy
import os, sys
assert os.getuid() != 0, "the worker must not run as root"
assert "+cpu" in torch.__version__, torch.__version__
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, "grpc", grpc.__version__)' \
  || die "smoke test failed: $WORKER_IMAGE cannot import its runtime"
TIMINGS+=("smoke test (docker run, import torch+grpc+transformers+smiless): $(secs "$t")")

size=$(docker image inspect -f '{{.Size}}' "$WORKER_IMAGE")
say "$WORKER_IMAGE: $((size / 1000000)) MB; $BASE_IMAGE: $(( $(docker image inspect -f '{{.Size}}' "$BASE_IMAGE") / 1000000 )) MB"
for line in "${TIMINGS[@]}"; do say "timing: $line"; done
say "total: $(secs "$T_ALL")"
