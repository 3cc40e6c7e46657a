#!/usr/bin/env bash
# Build the project image (every pipeline step) and the serving image; `make image` runs this.
#
#   infra/build_images.sh                  # build mmoe-ranker:latest and mmoe-ranker-serving:latest
#   RANKER_IMAGE=europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker:abc123 \
#   SERVING_IMAGE=europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker-serving:abc123 \
#   BASE_IMAGE=python:3.11-slim-bookworm infra/build_images.sh --push
#
# Environment (all optional):
#   RANKER_IMAGE      project image tag                     (default mmoe-ranker:latest)
#   SERVING_IMAGE     serving image tag                     (default mmoe-ranker-serving:latest)
#   BASE_IMAGE        Debian bookworm + Python 3.11 image. Unset: python:3.11-slim-bookworm when it
#                     is present or can be pulled, else a local base made with debootstrap (needs
#                     root and the debootstrap package; made once, reused while it exists).
#   LOCAL_BASE_IMAGE  tag of that debootstrap base           (default mmoe-ranker-base:bookworm)
#   DEPS_IMAGE        tag of the dependency build stage      (default mmoe-ranker-deps:latest)
#   DEBIAN_MIRROR     mirror debootstrap reads              (default http://deb.debian.org/debian)
#   DOCKER_BUILD_OPTS extra `docker build` options, e.g. "--network host --no-cache"
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL  http(s) package indexes the build's pip should use
#   PIP_CERT          CA bundle the build's pip should trust (default: the host's system bundle)
#
# Rebuilding is cheap: Docker's layer cache reuses the dependency layer until setup.py or
# constraints.txt change, so an up-to-date image is rebuilt in seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RANKER_IMAGE=${RANKER_IMAGE:-mmoe-ranker:latest}
SERVING_IMAGE=${SERVING_IMAGE:-mmoe-ranker-serving:latest}
LOCAL_BASE_IMAGE=${LOCAL_BASE_IMAGE:-mmoe-ranker-base:bookworm}
DEPS_IMAGE=${DEPS_IMAGE:-mmoe-ranker-deps:latest}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
OFFICIAL_BASE_IMAGE=python:3.11-slim-bookworm
PIP_BUILD_DIR="$ROOT/infra/pip-build"
PUSH=0

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

log() { printf '[build_images] %s\n' "$*" >&2; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# A minimal Debian bookworm root filesystem with Python 3.11, imported as a Docker image: the
# same role python:3.11-slim-bookworm plays where a registry can be reached.
build_debootstrap_base() {
  command -v debootstrap >/dev/null || {
    log "no registry reachable and debootstrap missing: apt-get install debootstrap, or set BASE_IMAGE"
    exit 1
  }
  [[ $(id -u) -eq 0 ]] || { log "debootstrap needs root to build $LOCAL_BASE_IMAGE (or set BASE_IMAGE)"; exit 1; }
  local rootfs
  rootfs=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: the variable is local
  trap "rm -rf '$rootfs'" EXIT
  log "building $LOCAL_BASE_IMAGE with debootstrap from $DEBIAN_MIRROR (once; a few minutes)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1 \
    bookworm "$rootfs" "$DEBIAN_MIRROR" >&2
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  tar --numeric-owner -C "$rootfs" -c . |
    docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$LOCAL_BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

# Echo the base image to build on, making the local one when no registry can be reached.
resolve_base_image() {
  if [[ -n ${BASE_IMAGE:-} ]]; then
    echo "$BASE_IMAGE"
  elif image_exists "$OFFICIAL_BASE_IMAGE" || docker pull --quiet "$OFFICIAL_BASE_IMAGE" >/dev/null 2>&1; then
    echo "$OFFICIAL_BASE_IMAGE"
  else
    image_exists "$LOCAL_BASE_IMAGE" || build_debootstrap_base
    echo "$LOCAL_BASE_IMAGE"
  fi
}

# Hand the host's CA bundle and http(s) index settings to the builder stage (see pip-build/README.md).
write_pip_settings() {
  local cert=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
  rm -f "$PIP_BUILD_DIR/pip.conf" "$PIP_BUILD_DIR/ca-bundle.crt"
  {
    echo "[global]"
    if [[ -f $cert ]]; then
      cp "$cert" "$PIP_BUILD_DIR/ca-bundle.crt"
      echo "cert = /etc/pip-build/ca-bundle.crt"
    fi
    [[ ${PIP_INDEX_URL:-} == http* ]] && echo "index-url = $PIP_INDEX_URL"
    [[ ${PIP_EXTRA_INDEX_URL:-} == http* ]] && echo "extra-index-url = $PIP_EXTRA_INDEX_URL"
    true
  } >"$PIP_BUILD_DIR/pip.conf"
}

build() {
  local base
  base=$(resolve_base_image)
  write_pip_settings
  # The dependency stage gets its own tag so that `docker image prune` (which removes untagged
  # images, and with them the legacy builder's stage cache) never costs a 3 GB reinstall.
  log "building $DEPS_IMAGE (the pinned dependencies) on $base"
  # shellcheck disable=SC2086
  docker build ${DOCKER_BUILD_OPTS:-} --build-arg "BASE_IMAGE=$base" --target deps \
    -f "$ROOT/infra/Dockerfile" -t "$DEPS_IMAGE" "$ROOT"
  log "building $RANKER_IMAGE on $base"
  # shellcheck disable=SC2086  # DOCKER_BUILD_OPTS is a list of options
  docker build ${DOCKER_BUILD_OPTS:-} --build-arg "BASE_IMAGE=$base" \
    -f "$ROOT/infra/Dockerfile" -t "$RANKER_IMAGE" "$ROOT"
  log "building $SERVING_IMAGE on $RANKER_IMAGE"
  # shellcheck disable=SC2086
  docker build ${DOCKER_BUILD_OPTS:-} --build-arg "RANKER_IMAGE=$RANKER_IMAGE" \
    -f "$ROOT/infra/serving.Dockerfile" -t "$SERVING_IMAGE" "$ROOT"
  if ((PUSH)); then
    docker push "$RANKER_IMAGE"
    docker push "$SERVING_IMAGE"
  fi
  log "done: $RANKER_IMAGE $SERVING_IMAGE"
}

while (($#)); do
  case $1 in
    --push) PUSH=1 ;;
    -h | --help) usage; exit 0 ;;
    *) log "unknown option: $1"; usage >&2; exit 2 ;;
  esac
  shift
done
build
