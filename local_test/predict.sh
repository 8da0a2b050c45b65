#!/usr/bin/env bash
# Send an image to a running model server's /invocations and print the most likely breeds.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: local_test/predict.sh [options] IMAGE_FILE

  --url URL      server address (default: http://127.0.0.1:8080)
  --top-k K      how many breeds to print (default: 3), sent as
                 X-Amzn-SageMaker-Custom-Attributes: top_k=K
  --raw          print the server's JSON as it is
  -h, --help     this help
USAGE
}

die() { printf '[predict] error: %s\n' "$*" >&2; exit 1; }

url=http://127.0.0.1:8080 top_k=3 raw=0 file=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --url) url=${2:?--url needs a value}; shift ;;
    --top-k) top_k=${2:?--top-k needs a value}; shift ;;
    --raw) raw=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) file=$1 ;;
  esac
  shift
done
[[ -n $file ]] || { usage >&2; die "give an image file"; }
[[ -f $file ]] || die "no such file: $file"
[[ $top_k =~ ^[1-9][0-9]*$ ]] || die "--top-k must be a positive integer, got '$top_k'"
command -v curl >/dev/null || die "curl is not installed"

case "${file,,}" in
  *.png) content_type=image/png ;;
  *) content_type=image/jpeg ;;
esac
printf '[predict] POST %s/invocations (%s, %s bytes, top_k=%s)\n' "$url" "$file" "$(wc -c <"$file")" "$top_k" >&2
body=$(mktemp)
trap 'rm -f "$body"' EXIT
status=$(curl -sS -o "$body" -w '%{http_code}' -X POST "$url/invocations" \
  -H "Content-Type: $content_type" -H "Accept: application/json" \
  -H "X-Amzn-SageMaker-Custom-Attributes: top_k=$top_k" --data-binary "@$file") \
  || die "cannot reach $url (is the server running? local_test/serve_local.sh starts one)"
[[ $status == 200 ]] || die "the server answered HTTP $status: $(cat "$body")"
if [[ $raw == 1 ]] || ! command -v python3 >/dev/null; then
  cat "$body"; echo
  exit 0
fi
python3 - "$body" <<'PY'
import json, sys
predictions = json.load(open(sys.argv[1]))["predictions"][0]
for rank, p in enumerate(predictions, 1):
    print(f"{rank}. {p['label']:<40} {p['probability']:7.2%}")
PY
