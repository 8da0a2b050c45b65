#!/bin/sh
# SageMaker starts serving containers as `docker run IMAGE serve`.
set -e
case "${1:-serve}" in
  serve)
    [ "$#" -gt 0 ] && shift
    exec dogbreed-serve "$@"
    ;;
  train)
    echo "dogbreed-serve: this is the model server image; run training with the dogbreed-train image" >&2
    exit 2
    ;;
  *)
    exec "$@"
    ;;
esac
