#!/usr/bin/env bash
# Build an offline stand-in for the official PyTorch base image, for machines that cannot pull
# from Docker Hub (CI, air-gapped hosts): Debian bookworm from debootstrap, Python 3.11 in a venv at
# /opt/venv (first on PATH, like /opt/conda in pytorch/pytorch), torch and torchvision from this
# machine's wheel folders (PyPI for whatever they lack), and this machine's CA bundle, so HTTPS
# through an intercepting proxy works during image builds.
#
# --slim builds the stand-in for the slim serving image's base (python:3.11-slim) instead: the same
# Debian root filesystem and CA bundle, no torch. With --arch arm64 it is built for linux/arm64
# (SageMaker Graviton, ml.c7g) under qemu emulation (scripts/enable_arm64_emulation.sh sets it up);
# only the slim base has an arm64 stand-in: the torch one would need arm64 torch wheels here.
#
# The image is tagged by a hash of this script and the torch pins, so a repeated run reuses it.
# stdout: the image tag (last line); progress goes to stderr.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/build_standin_base.sh [--slim [--arch amd64|arm64]] [--print-tag] [--rebuild]

Builds (or reuses) the stand-in base image and prints its tag.

  --slim        the slim serving image's base: Python 3.11 without torch
  --arch ARCH   amd64 or arm64 (default: this host's); arm64 with --slim only, built on x86_64
                under qemu emulation (scripts/enable_arm64_emulation.sh installs it when missing)
  --print-tag   print the tag this script would build and exit
  --rebuild     build even when an image with that tag exists
  -h, --help    this help

Environment:
  DEBIAN_MIRROR      Debian mirror for debootstrap (default: the host's apt source, else
                     http://deb.debian.org/debian)
  STANDIN_WHEEL_DIRS colon-separated wheel folders pip may use
                     (default: /opt/pypi-more/files:/opt/pypi/files:/opt/wheels, those that exist)
  HOST_CA_BUNDLE     CA bundle to trust inside the image (default: /etc/ssl/certs/ca-certificates.crt)
USAGE
}

TORCH_PIN="torch==2.14.1"
TORCHVISION_PIN="torchvision==0.29.1"
NUMPY_PIN="numpy<2.3"
SUITE=bookworm

log() { printf '[standin-base] %s\n' "$*" >&2; }
die() { printf '[standin-base] error: %s\n' "$*" >&2; exit 1; }

print_only=0 rebuild=0 slim=0 arch=amd64
[[ $(uname -m) == aarch64 ]] && arch=arm64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --slim) slim=1 ;;
    --arch) arch=${2:?--arch needs amd64 or arm64}; shift ;;
    --print-tag) print_only=1 ;;
    --rebuild) rebuild=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

case "$arch" in
  amd64) arch_suffix="" ;;
  arm64)
    arch_suffix="-arm64"
    [[ $slim == 1 ]] || die "--arch arm64 needs --slim: only the slim base has an arm64 stand-in (the torch one would need arm64 torch wheels)" ;;
  *) die "--arch must be amd64 or arm64, got '$arch'" ;;
esac
ROOTFS_TAG="dogbreed-standin-rootfs:${SUITE}${arch_suffix}"
script_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
TAG="dogbreed-standin-base:torch2.14.1-${script_hash}"
[[ $slim == 1 ]] && TAG="dogbreed-standin-slim:python3.11${arch_suffix}-${script_hash}"
if [[ $print_only == 1 ]]; then echo "$TAG"; exit 0; fi

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach a Docker engine (is dockerd running?)"
if [[ $arch == arm64 ]]; then
  "$(dirname "${BASH_SOURCE[0]}")/enable_arm64_emulation.sh" || die "arm64 emulation is not available (above)"
fi
if [[ $rebuild == 0 ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
  log "reusing $TAG"
  echo "$TAG"
  exit 0
fi

host_mirror() {
  local uri
  uri=$(grep -hsE '^\s*(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
      /etc/apt/sources.list.d/*.list 2>/dev/null | grep -oE 'https?://[^ ]*/debian/?' \
      | grep -v security | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# `docker import --platform` (Docker 20.10) records only the OS: the architecture is the host's. So
# an arm64 root filesystem gets its architecture written into its image config (docker save/load).
set_image_arch() {  # set_image_arch <image> <arch>
  docker save "$1" | python3 -c '
import io, json, sys, tarfile
src = tarfile.open(fileobj=sys.stdin.buffer, mode="r|")
dst = tarfile.open(fileobj=sys.stdout.buffer, mode="w|")
for member in src:
    data = src.extractfile(member) if member.isfile() else None
    if member.name.endswith(".json") and "/" not in member.name and member.name != "manifest.json":
        config = dict(json.load(data), architecture=sys.argv[1])
        raw = json.dumps(config).encode()
        member.size, data = len(raw), io.BytesIO(raw)
    dst.addfile(member, data)
dst.close()
' "$2" | docker load >/dev/null
}

workdir=$(mktemp -d /tmp/dogbreed-standin.XXXXXX)
container="dogbreed-standin-build-$$"
cleanup() {
  docker rm -f "$container" >/dev/null 2>&1 || true
  rm -rf "$workdir"
}
trap cleanup EXIT

if [[ $rebuild == 1 ]] || ! docker image inspect "$ROOTFS_TAG" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  [[ $(id -u) == 0 ]] || die "debootstrap needs root; run as root or build $ROOTFS_TAG elsewhere"
  mirror=${DEBIAN_MIRROR:-$(host_mirror)}
  log "debootstrap $SUITE from $mirror"
  debootstrap --arch "$arch" --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$workdir/rootfs" "$mirror" >"$workdir/debootstrap.log" 2>&1 \
    || { tail -n 20 "$workdir/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  rm -rf "$workdir"/rootfs/var/cache/apt/archives/*.deb "$workdir"/rootfs/var/lib/apt/lists/*
  log "importing the root filesystem as $ROOTFS_TAG"
  tar -C "$workdir/rootfs" -c . | docker import --platform "linux/$arch" - "$ROOTFS_TAG" >/dev/null
  rm -rf "$workdir/rootfs"
fi
rootfs_arch=$(docker image inspect --format '{{.Architecture}}' "$ROOTFS_TAG")
if [[ $rootfs_arch != "$arch" ]]; then
  log "marking $ROOTFS_TAG as $arch (docker import recorded $rootfs_arch)"
  old_id=$(docker image inspect --format '{{.Id}}' "$ROOTFS_TAG")
  set_image_arch "$ROOTFS_TAG" "$arch" || die "could not set the architecture of $ROOTFS_TAG"
  docker rmi "$old_id" >/dev/null 2>&1 || true
  [[ $(docker image inspect --format '{{.Architecture}}' "$ROOTFS_TAG") == "$arch" ]] \
    || die "$ROOTFS_TAG is still not $arch after rewriting its config"
fi

ca_bundle=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[[ -f $ca_bundle ]] || die "CA bundle not found: $ca_bundle (set HOST_CA_BUNDLE)"
ca=/etc/ssl/certs/ca-certificates.crt
if [[ $slim == 1 ]]; then
  docker run --name "$container" --platform "linux/$arch" -v "$ca_bundle:/tmp/host-ca.crt:ro" "$ROOTFS_TAG" \
    cp /tmp/host-ca.crt "$ca" >&2 || die "adding the CA bundle to the stand-in failed"
  docker commit \
    --change "ENV LANG=C.UTF-8 PIP_CERT=$ca SSL_CERT_FILE=$ca REQUESTS_CA_BUNDLE=$ca" \
    --change "LABEL org.opencontainers.image.title=dogbreed-standin-slim" \
    --change "LABEL org.opencontainers.image.description=\"Offline stand-in for python:3.11-slim: Debian $SUITE, Python 3.11, linux/$arch\"" \
    --change 'CMD ["python3"]' \
    "$container" "$TAG" >/dev/null
  log "built $TAG"
  echo "$TAG"
  exit 0
fi
mounts=(-v "$ca_bundle:/tmp/host-ca.crt:ro")
find_links=()
IFS=: read -r -a wheel_dirs <<<"${STANDIN_WHEEL_DIRS:-/opt/pypi-more/files:/opt/pypi/files:/opt/wheels}"
i=0
for dir in "${wheel_dirs[@]}"; do
  [[ -d $dir ]] || continue
  mounts+=(-v "$dir:/wheels/$i:ro")
  find_links+=(--find-links "/wheels/$i")
  i=$((i + 1))
done
log "installing $TORCH_PIN $TORCHVISION_PIN into /opt/venv (wheel folders: $i)"
docker run --name "$container" "${mounts[@]}" -e PIP_CERT=/tmp/host-ca.crt \
  -e PIP_DISABLE_PIP_VERSION_CHECK=1 -e PIP_DEFAULT_TIMEOUT=180 "$ROOTFS_TAG" sh -euc "
    cp /tmp/host-ca.crt /etc/ssl/certs/ca-certificates.crt
    python3 -m venv /opt/venv
    /opt/venv/bin/pip install --no-cache-dir --progress-bar off ${find_links[*]} \
      '$TORCH_PIN' '$TORCHVISION_PIN' '$NUMPY_PIN' >/tmp/pip.log 2>&1 || { tail -n 30 /tmp/pip.log; exit 1; }
    /opt/venv/bin/python -c 'import torch, torchvision; print(\"torch\", torch.__version__, \"torchvision\", torchvision.__version__)'
    find /opt/venv -name __pycache__ -prune -exec rm -rf {} +
  " >&2 || die "installing torch in the stand-in failed (output above)"

log "committing $TAG"
docker commit \
  --change "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8 PIP_CERT=$ca SSL_CERT_FILE=$ca REQUESTS_CA_BUNDLE=$ca" \
  --change "LABEL org.opencontainers.image.title=dogbreed-standin-base" \
  --change "LABEL org.opencontainers.image.description=\"Offline stand-in for pytorch/pytorch: Debian $SUITE, Python 3.11, $TORCH_PIN, $TORCHVISION_PIN\"" \
  --change 'CMD ["python3"]' \
  "$container" "$TAG" >/dev/null
log "built $TAG"
echo "$TAG"
