#!/usr/bin/env bash
# Build the dogbreed train and/or serve images from this repository.
# stdout: the built image references, one per line; progress goes to stderr.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/build_images.sh [options] [train|serve|all]

Builds docker/train/Dockerfile as <prefix>train:<tag> and docker/serve/Dockerfile as
<prefix>serve:<tag> (default: both) and prints the image references.

Options:
  --base-image IMAGE   base image with Python, torch and torchvision, or one of:
                         official  the default in the Dockerfiles (pytorch/pytorch CUDA runtime)
                         standin   the offline stand-in (scripts/build_standin_base.sh)
                         auto      official if present or pullable, else the stand-in (default)
  --tag TAG            image tag (default: latest)
  --prefix PREFIX      image name prefix (default: dogbreed-)
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
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base-image) base=${2:?--base-image needs a value}; shift ;;
    --tag) tag=${2:?--tag needs a value}; shift ;;
    --prefix) prefix=${2?--prefix needs a value}; shift ;;
    --bake-weights) bake=${2:?--bake-weights needs 0 or 1}; shift ;;
    train | serve | all) which=$1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ -z $bake || $bake == 0 || $bake == 1 ]] || die "--bake-weights must be 0 or 1, got '$bake'"
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid tag '$tag'"

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach a Docker engine (is dockerd running? can you use its socket?)"

official=$(sed -n 's/^ARG BASE_IMAGE=//p' "$repo_root/docker/train/Dockerfile" | head -n1)
[[ -n $official ]] || die "cannot read the default BASE_IMAGE from docker/train/Dockerfile"

resolve_base() {
  case "$base" in
    official) echo "$official" ;;
    standin) "$repo_root/scripts/build_standin_base.sh" | tail -n1 ;;
    auto)
      if docker image inspect "$official" >/dev/null 2>&1; then
        echo "$official"
      elif log "pulling $official" && timeout "${PULL_TIMEOUT:-600}" docker pull "$official" >&2; then
        echo "$official"
      else
        log "cannot pull $official; using the offline stand-in base"
        "$repo_root/scripts/build_standin_base.sh" | tail -n1
      fi ;;
    *) echo "$base" ;;
  esac
}
base_image=$(resolve_base) || die "could not get a base image"
if [[ -z $bake ]]; then
  bake=1
  [[ $base_image == dogbreed-standin-base:* ]] && bake=0
fi

build() {  # build <role>
  local role=$1 image="${prefix}$1:${tag}" args=()
  [[ $role == train ]] && args+=(--build-arg "BAKE_WEIGHTS=$bake")
  log "building $image from $base_image${args:+ (BAKE_WEIGHTS=$bake)}"
  local start=$SECONDS
  docker build --force-rm -f "$repo_root/docker/$role/Dockerfile" -t "$image" \
    --build-arg "BASE_IMAGE=$base_image" "${args[@]}" "$repo_root" >&2 \
    || die "building $image failed (docker output above)"
  log "built $image in $((SECONDS - start)) s"
  echo "$image"
}

case "$which" in
  train | serve) build "$which" ;;
  all) build train; build serve ;;
esac
