#!/usr/bin/env bash
# Create or update the development environments:
#   .venv             torch and torchvision first (from this machine's wheel folders when it has
#                     them), then this package with the train, serve, launch and dev extras, editable
#   .venv-slim        this package with the slim extra only (the torch-free ONNX Runtime server);
#                     apart because onnxruntime needs protobuf>=4.25.8 and smdebug protobuf<=3.20.3
#   build/onnx-site   docker/train/requirements-export.txt (onnx, onnxruntime, protobuf >= 6.31:
#                     the train image's pins) in a `pip --target --no-deps` folder, for the
#                     training job's export subprocess only (DOGBREED_ONNX_SITE); numpy and the
#                     rest come from .venv, whose own protobuf stays 3.20 for smdebug
# Idempotent: each has a stamp keyed on pyproject.toml, the export pins and this script; nothing
# changed, no work.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$repo_root/.venv}
slim_venv=${SLIM_VENV:-$repo_root/.venv-slim}
onnx_site=${ONNX_SITE:-$repo_root/build/onnx-site}
export_pins=$repo_root/docker/train/requirements-export.txt
python=${PYTHON:-python3}
torch_pins=(torch==2.14.1 torchvision==0.29.1)
extras="train,serve,launch,dev"

log() { printf '[dev-env] %s\n' "$*" >&2; }
die() { printf '[dev-env] error: %s\n' "$*" >&2; exit 1; }

key=$(cat "$repo_root/pyproject.toml" "$export_pins" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
stamp_name=.dogbreed-dev-env

find_links=()
for dir in /opt/pypi-more/files /opt/pypi/files /opt/wheels; do
  [[ -d $dir ]] && find_links+=(--find-links "$dir")
done
pip_options=(--quiet --disable-pip-version-check --progress-bar off "${find_links[@]}")

# up_to_date DIR IMPORTS [PYTHONPATH]: DIR's stamp holds this key and .venv's or DIR's python
# imports IMPORTS (with PYTHONPATH, if given).
up_to_date() {
  local python=$1/bin/python
  [[ -x $python ]] || python=$venv/bin/python
  [[ -f $1/$stamp_name && $(cat "$1/$stamp_name") == "$key" ]] \
    && PYTHONPATH=${3:-} "$python" -c "import $2" >/dev/null 2>&1
}

# make_venv DIR: a venv at DIR from $python, unless one is there.
make_venv() {
  [[ -x $1/bin/python ]] && return
  command -v "$python" >/dev/null || die "$python not found (set PYTHON to a Python >= 3.10)"
  log "creating $1 with $("$python" --version 2>&1)"
  "$python" -m venv "$1" || die "cannot create $1 (on Debian: apt-get install python3-venv)"
}

main_venv() {
  if up_to_date "$venv" "dogbreed, torch"; then
    log "$venv is up to date"
    return
  fi
  make_venv "$venv"
  local pip=("$venv/bin/python" -m pip install "${pip_options[@]}")
  log "installing ${torch_pins[*]}"
  "${pip[@]}" "${torch_pins[@]}" || die "installing ${torch_pins[*]} failed"
  log "installing dogbreed[$extras] (editable)"
  "${pip[@]}" -e "${repo_root}[${extras}]" "${torch_pins[@]}" \
    || die "installing dogbreed[$extras] failed"
  echo "$key" >"$venv/$stamp_name"
  log "$venv is ready"
}

slim_venv() {
  if up_to_date "$slim_venv" "dogbreed, onnxruntime, flask"; then
    log "$slim_venv is up to date"
    return
  fi
  make_venv "$slim_venv"
  log "installing dogbreed[slim] (editable) into $slim_venv"
  "$slim_venv/bin/python" -m pip install "${pip_options[@]}" -e "${repo_root}[slim]" \
    || die "installing dogbreed[slim] failed"
  echo "$key" >"$slim_venv/$stamp_name"
  log "$slim_venv is ready"
}

onnx_site() {
  if up_to_date "$onnx_site" "onnx, onnxruntime" "$onnx_site"; then
    log "$onnx_site is up to date"
    return
  fi
  log "installing $(basename "$export_pins") into $onnx_site (no dependencies: .venv has them)"
  rm -rf "$onnx_site"
  "$venv/bin/python" -m pip install "${pip_options[@]}" --no-deps --only-binary=:all: \
    --target "$onnx_site" -r "$export_pins" || die "installing $export_pins failed"
  PYTHONPATH=$onnx_site "$venv/bin/python" -c 'import onnx, onnxruntime' \
    || die "$onnx_site does not import onnx and onnxruntime on top of $venv"
  echo "$key" >"$onnx_site/$stamp_name"
  log "$onnx_site is ready"
}

main_venv
slim_venv
onnx_site
