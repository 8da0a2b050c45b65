#!/usr/bin/env bash
# Run the train image on a local /opt/ml tree (test_dir/), as SageMaker would: `docker run IMAGE train`
# with the tree mounted at /opt/ml, host name algo-1 and no network. The model lands in
# test_dir/model/, the job's outputs in test_dir/output/.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: local_test/train_local.sh [options]

  --image IMAGE        train image (default: dogbreed-train:${TAG:-latest})
  --test-dir DIR       the /opt/ml tree (default: local_test/test_dir)
  --hp KEY=VALUE       override one hyperparameter for this run (repeatable)
  --gpus auto|all|none GPUs for the container (default: auto = all when nvidia-smi sees one)
  -h, --help           this help

The data goes in <test-dir>/input/data/<channel>/; when the `training` channel is empty it is
filled with the bundled sample (python3 -m dogbreed.train.sample_data, run in the train image). When the
image has no baked ImageNet weights and the hyperparameters ask for them, the run uses
pretrained=false and says so.
USAGE
}

say() { printf '[train_local] %s\n' "$*" >&2; }
die() { printf '[train_local] error: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
image="dogbreed-train:${TAG:-latest}" test_dir="$here/test_dir" gpus=auto overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --image) image=${2:?--image needs a value}; shift ;;
    --test-dir) test_dir=${2:?--test-dir needs a value}; shift ;;
    --hp) [[ ${2:-} == *=* ]] || die "--hp needs KEY=VALUE, got '${2:-}'"; overrides+=("$2"); shift ;;
    --gpus) gpus=${2:?--gpus needs auto, all or none}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach a Docker engine (is dockerd running?)"
docker image inspect "$image" >/dev/null 2>&1 || die "no image $image: build it with 'make images'"
test_dir=$(cd "$test_dir" 2>/dev/null && pwd) || die "test dir not found: $test_dir"
config="$test_dir/input/config"
for file in hyperparameters.json inputdataconfig.json resourceconfig.json; do
  [[ -f $config/$file ]] || die "missing $config/$file"
done

gpu_args=()
case "$gpus" in
  all) gpu_args=(--gpus all) ;;
  none) ;;
  auto) command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && gpu_args=(--gpus all) ;;
  *) die "--gpus must be auto, all or none, got '$gpus'" ;;
esac

# Containers write as the calling user, so the files they leave here stay removable without root.
as_user=()
[[ $(id -u) == 0 ]] || as_user=(--user "$(id -u):$(id -g)")

data="$test_dir/input/data/training"
if [[ ! -d $data ]] || [[ -z $(ls -A "$data") ]]; then
  say "filling $data with the bundled sample data"
  mkdir -p "$data"
  docker run --rm --network none "${as_user[@]}" -v "$data:/data" "$image" python3 -m dogbreed.train.sample_data /data >&2
fi

# The hyperparameters for this run: the file plus --hp overrides, written next to the tree so the
# committed file stays as it is.
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
if ! docker run --rm --network none "$image" python3 -c \
    'import sys; from dogbreed.model import imagenet_weights_path as p; sys.exit(0 if p().is_file() else 1)'; then
  if ! printf '%s\n' "${overrides[@]}" | grep -q '^pretrained='; then
    say "$image has no baked ImageNet weights (built with BAKE_WEIGHTS=0): training with pretrained=false"
    overrides+=("pretrained=false")
  fi
fi
docker run --rm -i --network none "${as_user[@]}" -v "$config:/config:ro" -v "$workdir:/work" \
  "$image" python3 - /config/hyperparameters.json /work/hyperparameters.json "${overrides[@]}" <<'PY'
import json, sys
source, target, *overrides = sys.argv[1:]
params = json.load(open(source))
for item in overrides:
    key, value = item.split("=", 1)
    params[key] = value  # SageMaker passes every hyperparameter as a string
json.dump(params, open(target, "w"), indent=2)
PY

rm -rf "$test_dir/model" "$test_dir/output"
mkdir -p "$test_dir/model" "$test_dir/output"
say "training with $image on $test_dir (hyperparameters: $(tr -d '\n ' <"$workdir/hyperparameters.json"))"
say "docker run --rm --network none --hostname algo-1 ${gpu_args[*]} -v $test_dir:/opt/ml $image train"
status=0
docker run --rm --network none --hostname algo-1 "${gpu_args[@]}" "${as_user[@]}" \
  -v "$test_dir:/opt/ml" -v "$workdir/hyperparameters.json:/opt/ml/input/config/hyperparameters.json:ro" \
  "$image" train || status=$?
if [[ $status != 0 ]]; then
  [[ -f $test_dir/output/failure ]] && say "failure reason: $(head -c 1024 "$test_dir/output/failure")"
  die "training failed (exit $status)"
fi
say "done: model in $test_dir/model ($(ls "$test_dir/model" | tr '\n' ' '))"
