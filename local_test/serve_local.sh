#!/usr/bin/env bash
# Serve a trained model with the serve image (or the slim one), as SageMaker would:
# `docker run IMAGE serve` with the model at /opt/ml/model, published on 127.0.0.1:PORT (8080
# inside the container).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: local_test/serve_local.sh [options] [MODEL]

MODEL is a model directory (model.pt + model.json; with --slim model.onnx + model.json) or a
model.tar.gz (default: local_test/test_dir/model, where train_local.sh leaves it).

  --slim               serve with the slim image (dogbreed-serve-slim: ONNX Runtime, no torch, CPU
                       only, runs as an unprivileged user), as CPU and serverless endpoints do.
                       MODEL must hold model.onnx (and model.int8.onnx, served when present), which
                       training jobs write; add them to an older model with `dogbreed-export MODEL
                       --data DIR` (python -m dogbreed.export; the train image has it, see
                       docs/training.md)
  --image IMAGE        serve image (default: dogbreed-serve:${TAG:-latest}, with --slim
                       dogbreed-serve-slim:${TAG:-latest})
  --port PORT          host port on 127.0.0.1 (default: 8080)
  --detach             run in the background: wait for /ping, print the container name, exit
                       (stop it with: docker rm -f NAME)
  --name NAME          container name (default: dogbreed-serve-local)
  --gpus auto|all|none GPUs for the container (default: auto; none with --slim)
  -h, --help           this help
USAGE
}

say() { printf '[serve_local] %s\n' "$*" >&2; }
die() { printf '[serve_local] error: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
image="" port=8080 detach=0 name=dogbreed-serve-local gpus=auto slim=0
model="$here/test_dir/model"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --slim) slim=1 ;;
    --image) image=${2:?--image needs a value}; shift ;;
    --port) port=${2:?--port needs a value}; shift ;;
    --detach) detach=1 ;;
    --name) name=${2:?--name needs a value}; shift ;;
    --gpus) gpus=${2:?--gpus needs auto, all or none}; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) model=$1 ;;
  esac
  shift
done
[[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "--port must be 1-65535, got '$port'"
required=(model.pt model.json)
if [[ $slim == 1 ]]; then
  image=${image:-dogbreed-serve-slim:${TAG:-latest}} required=(model.json model.onnx)
  [[ $gpus != all ]] || die "--slim serves on CPU only (ONNX Runtime, no CUDA): drop --gpus all"
  gpus=none
fi
image=${image:-dogbreed-serve:${TAG:-latest}}

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach a Docker engine (is dockerd running?)"
docker image inspect "$image" >/dev/null 2>&1 || die "no image $image: build it with 'make images'"

# SageMaker extracts model.tar.gz into /opt/ml/model: do the same for a tarball.
if [[ -f $model && $model == *.tar.gz ]]; then
  extracted=$(mktemp -d)
  [[ $detach == 1 ]] || trap 'rm -rf "$extracted"' EXIT
  tar -xzf "$model" -C "$extracted" || die "cannot extract $model"
  chmod -R a+rX "$extracted"  # our own copy: readable by the slim image's unprivileged server
  say "extracted $model to $extracted"
  model=$extracted
fi
[[ -d $model ]] || die "model not found: $model (train one with local_test/train_local.sh)"
model=$(cd "$model" && pwd)
for file in "${required[@]}"; do
  [[ -f $model/$file ]] && continue
  [[ $file == model.onnx ]] && die "$model has no model.onnx, which the slim image serves: \
export it with 'dogbreed-export $model --data DIR' (the train image has it; docs/training.md), \
or serve model.pt without --slim"
  die "$model has no $file: not a dogbreed model directory"
done
if [[ $slim == 1 ]]; then  # its server is not root: others must be able to read the model
  for path in "$model" "$model"/model.json "$model"/model*.onnx; do
    mode=$(stat -c %a "$path")
    need=4 && [[ -d $path ]] && need=5
    (((8#$mode & need) == need)) || die "$path is mode $mode: the slim image's server runs as \
an unprivileged user and cannot read it; make it readable with: chmod a+rX $path"
  done
fi

gpu_args=()
case "$gpus" in
  all) gpu_args=(--gpus all) ;;
  none) ;;
  auto) command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && gpu_args=(--gpus all) ;;
  *) die "--gpus must be auto, all or none, got '$gpus'" ;;
esac

docker rm -f "$name" >/dev/null 2>&1 || true
run=(docker run --rm --name "$name" -p "127.0.0.1:$port:8080" "${gpu_args[@]}"
     -v "$model:/opt/ml/model:ro" "$image" serve)
say "${run[*]}"
if [[ $detach == 0 ]]; then
  say "serving on http://127.0.0.1:$port (Ctrl-C stops it)"
  exec "${run[@]}"
fi

"${run[@]:0:3}" -d "${run[@]:3}" >/dev/null
say "waiting for http://127.0.0.1:$port/ping"
for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$port/ping" >/dev/null 2>&1; then
    say "ready: http://127.0.0.1:$port (container $name; stop it with: docker rm -f $name)"
    echo "$name"
    exit 0
  fi
  docker inspect "$name" >/dev/null 2>&1 || die "the container exited; run without --detach to see why"
  sleep 0.5
done
docker logs --tail 30 "$name" >&2 || true
docker rm -f "$name" >/dev/null 2>&1 || true
die "the server did not answer /ping within 60 s (logs above)"
