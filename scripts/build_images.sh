#!/usr/bin/env bash
# Build the dogbreed train and/or serve images from this repository.
# stdout: the built image references, one per line; progress goes to stderr.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/build_images.sh [options] [train|serve|serve-slim|all]

Builds docker/<role>/Dockerfile as <prefix><role>:<tag> for each role (default: all three:
train, serve, serve-slim) and prints the image references.

Options:
  --base-image IMAGE   base image with Python, torch and torchvision, or one of:
                         official  the default in the Dockerfiles (pytorch/pytorch CUDA runtime;
                                   python:3.11-slim for serve-slim)
                         standin   the offline stand-ins (scripts/build_standin_base.sh [--slim])
                         auto      official if present or pullable, else the stand-in (default)
  --tag TAG            image tag (default: latest)
  --prefix PREFIX      image name prefix (default: dogbreed-)
  --platform PLATFORM  linux/amd64 (default) or linux/arm64; linux/arm64 (SageMaker Graviton,
                       ml.c7g) builds serve-slim only, as <prefix>serve-slim:<tag>-arm64, under
                       qemu emulation on x86_64 (scripts/enable_arm64_emulation.sh); the torch
                       images would need an arm64 PyTorch base
  --bake-weights 0|1   bake the ImageNet ResNet18 weights into the train image
                       (default: 1, or 0 when the base is the stand-in: a machine that cannot
                       pull from Docker Hub usually cannot reach download.pytorch.org either)
  -h, --help           this help

Environment: BASE_IMAGE, TAG, BAKE_WEIGHTS give the same defaults as the options;
PULL_TIMEOUT (seconds, default 600) bounds the pull that `auto` tries.
USAGE
}

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { printf '[build-images] error: %s\n' "$*" >&2; exit 1; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base=${BASE_IMAGE:-auto} tag=${TAG:-latest} prefix=dogbreed- bake=${BAKE_WEIGHTS:-} which=all
platform=linux/amd64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base-image) base=${2:?--base-image needs a value}; shift ;;
    --tag) tag=${2:?--tag needs a value}; shift ;;
    --prefix) prefix=${2?--prefix needs a value}; shift ;;
    --bake-weights) bake=${2:?--bake-weights needs 0 or 1}; shift ;;
    --platform) platform=${2:?--platform needs linux/amd64 or linux/arm64}; shift ;;
    train | serve | serve-slim | all) which=$1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ -z $bake || $bake == 0 || $bake == 1 ]] || die "--bake-weights must be 0 or 1, got '$bake'"
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid tag '$tag'"
case "$platform" in
  linux/amd64) arch=amd64 ;;
  linux/arm64)
    arch=arm64 tag="$tag-arm64"
    [[ $which == serve-slim ]] \
      || die "--platform linux/arm64 builds serve-slim only (got '$which'): the train and serve images need an arm64 PyTorch base, which neither the official CUDA image nor the stand-in provides"
    "$repo_root/scripts/enable_arm64_emulation.sh" || die "arm64 emulation is not available (above)" ;;
  *) die "--platform must be linux/amd64 or linux/arm64, got '$platform'" ;;
esac

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach a Docker engine (is dockerd running? can you use its socket?)"

official_base() {  # official_base <role>: the BASE_IMAGE default in its Dockerfile
  local found
  found=$(sed -n 's/^ARG BASE_IMAGE=//p' "$repo_root/docker/$1/Dockerfile" | head -n1)
  [[ -n $found ]] || die "cannot read the default BASE_IMAGE from docker/$1/Dockerfile"
  echo "$found"
}

image_arch() {  # image_arch <image>: its architecture, empty when the image is not here
  docker image inspect --format '{{.Architecture}}' "$1" 2>/dev/null || true
}

resolve_base() {  # resolve_base <official image> [--slim]
  local official=$1 standin=("$repo_root/scripts/build_standin_base.sh" "${@:2}")
  case "$base" in
    official) echo "$official" ;;
    standin) "${standin[@]}" | tail -n1 ;;
    auto)
      if [[ $(image_arch "$official") == "$arch" ]]; then
        echo "$official"
      elif log "pulling $official ($platform)" \
          && timeout "${PULL_TIMEOUT:-600}" docker pull --platform "$platform" "$official" >&2; then
        echo "$official"
      else
        log "cannot pull $official; using the offline stand-in base"
        "${standin[@]}" | tail -n1
      fi ;;
    *) echo "$base" ;;
  esac
}
base_image=""
if [[ $which != serve-slim ]]; then
  base_image=$(resolve_base "$(official_base train)") || die "could not get a base image"
fi
if [[ -z $bake ]]; then
  bake=1
  [[ $base_image == dogbreed-standin-base:* ]] && bake=0
fi

slim_base() {  # python:3.11-slim or its stand-in; a custom --base-image is a torch image: `auto`
  [[ $base == official || $base == standin ]] || local base=auto
  resolve_base "$(official_base serve-slim)" --slim --arch "$arch"
}

build() {  # build <role>
  local role=$1 image="${prefix}$1:${tag}" args=() base_image=$base_image note=""
  [[ $role == train ]] && args+=(--build-arg "BAKE_WEIGHTS=$bake") note=" (BAKE_WEIGHTS=$bake)"
  [[ $arch == amd64 ]] || args+=(--platform "$platform")
  if [[ $role == serve-slim ]]; then
    base_image=$(slim_base) || die "could not get a base image for serve-slim"
  fi
  local base_arch
  base_arch=$(image_arch "$base_image")
  [[ -z $base_arch || $base_arch == "$arch" ]] \
    || die "base image $base_image is $base_arch, not $arch: give --base-image a $platform image"
  log "building $image ($platform) from $base_image$note"
  local start=$SECONDS
  docker build --force-rm -f "$repo_root/docker/$role/Dockerfile" -t "$image" \
    --build-arg "BASE_IMAGE=$base_image" "${args[@]}" "$repo_root" >&2 \
    || die "building $image failed (docker output above)"
  [[ $(image_arch "$image") == "$arch" ]] || die "built $image, but it is $(image_arch "$image"), not $arch"
  log "built $image ($platform) in $((SECONDS - start)) s"
  echo "$image"
}

case "$which" in
  train | serve | serve-slim) build "$which" ;;
  all) build train; build serve; build serve-slim ;;
esac
