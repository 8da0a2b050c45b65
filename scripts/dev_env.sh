#!/usr/bin/env bash
# Create or update the development venv (.venv): torch and torchvision first (from this machine's
# wheel folders when it has them), then this package with every extra, editable.
# Idempotent: a stamp keyed on pyproject.toml and this script skips the work when nothing changed.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$repo_root/.venv}
python=${PYTHON:-python3}
torch_pins=(torch==2.14.1 torchvision==0.29.1)
extras="train,serve,launch,dev"

log() { printf '[dev-env] %s\n' "$*" >&2; }
die() { printf '[dev-env] error: %s\n' "$*" >&2; exit 1; }

key=$(cat "$repo_root/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
stamp="$venv/.dogbreed-dev-env"
if [[ -f $stamp && $(cat "$stamp") == "$key" ]] \
  && "$venv/bin/python" -c 'import dogbreed, torch' >/dev/null 2>&1; then
  log "$venv is up to date"
  exit 0
fi

if [[ ! -x $venv/bin/python ]]; then
  command -v "$python" >/dev/null || die "$python not found (set PYTHON to a Python >= 3.10)"
  log "creating $venv with $("$python" --version 2>&1)"
  "$python" -m venv "$venv" || die "cannot create $venv (on Debian: apt-get install python3-venv)"
fi

find_links=()
for dir in /opt/pypi-more/files /opt/pypi/files /opt/wheels; do
  [[ -d $dir ]] && find_links+=(--find-links "$dir")
done
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --progress-bar off "${find_links[@]}")
log "installing ${torch_pins[*]}"
"${pip[@]}" "${torch_pins[@]}" || die "installing ${torch_pins[*]} failed"
log "installing dogbreed[$extras] (editable)"
"${pip[@]}" -e "${repo_root}[${extras}]" "${torch_pins[@]}" || die "installing dogbreed[$extras] failed"
echo "$key" >"$stamp"
log "$venv is ready"
