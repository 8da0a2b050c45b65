#!/usr/bin/env bash
# The whole loop on one machine with Docker: build both images, train on the bundled sample in the
# train container, serve the model from the serve container, print a prediction, stop the server.
set -euo pipefail

say() { printf '\n[demo] %s\n' "$*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/.." && pwd)
tag=${TAG:-latest} port=${PORT:-8080}

say "1/4 building the images (BASE_IMAGE=${BASE_IMAGE:-auto})"
"$repo_root/scripts/build_images.sh" --base-image "${BASE_IMAGE:-auto}" --tag "$tag" >&2

say "2/4 training on the bundled sample in the train container"
"$here/train_local.sh" --image "dogbreed-train:$tag"

say "3/4 serving local_test/test_dir/model from the serve container on 127.0.0.1:$port"
name=$("$here/serve_local.sh" --image "dogbreed-serve:$tag" --port "$port" --detach --name dogbreed-demo)
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT

sample=$(find "$here/test_dir/input/data/training/test" -name '*.jpg' | sort | head -n1)
say "4/4 predicting $(basename "$(dirname "$sample")")/$(basename "$sample")"
"$here/predict.sh" --url "http://127.0.0.1:$port" --top-k 3 "$sample"
say "done (the server is stopped; run local_test/serve_local.sh to serve again)"
