#!/usr/bin/env bash
# Let this x86_64 host run linux/arm64 (aarch64) binaries and containers under qemu user-mode
# emulation, so that arm64 images (SageMaker Graviton, ml.c7g) can be built and tested here.
# Idempotent: installs qemu-user-static and binfmt-support with apt only when missing, mounts
# binfmt_misc only when unmounted, registers qemu-aarch64 only when unregistered, then checks that
# an aarch64 binary runs. The registration uses the F (fix-binary) flag, which Debian's
# qemu-user-static sets: the kernel holds the interpreter open, so containers need no qemu inside.
set -euo pipefail

log() { printf '[arm64-emulation] %s\n' "$*" >&2; }
die() { printf '[arm64-emulation] error: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  "") ;;
  -h | --help) echo "Usage: scripts/enable_arm64_emulation.sh   (root; see the header of this script)"; exit 0 ;;
  *) die "unknown argument: $1 (this script takes none)" ;;
esac

binfmt=/proc/sys/fs/binfmt_misc
entry=$binfmt/qemu-aarch64
qemu=/usr/bin/qemu-aarch64-static

case "$(uname -m)" in
  aarch64 | arm64) log "this host is already arm64: nothing to emulate"; exit 0 ;;
  x86_64) ;;
  *) die "unsupported host architecture $(uname -m) (this script handles x86_64 hosts)" ;;
esac

as_root() {  # as_root <what> <command...>: run as root, or say what needs root
  local what=$1; shift
  if [[ $(id -u) == 0 ]]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else die "$what needs root: run this script as root (or with passwordless sudo)"
  fi
}

if [[ ! -x $qemu ]] || ! command -v update-binfmts >/dev/null; then
  command -v apt-get >/dev/null \
    || die "apt-get not found: install qemu-user-static and binfmt-support with this system's package manager"
  log "installing qemu-user-static and binfmt-support"
  as_root "apt-get install" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
    --no-install-recommends qemu-user-static binfmt-support >&2 \
    || die "apt-get install qemu-user-static binfmt-support failed (try apt-get update first)"
fi
[[ -x $qemu ]] || die "$qemu missing after installing qemu-user-static"

if [[ ! -e $binfmt/register ]]; then
  log "mounting binfmt_misc on $binfmt"
  as_root "mounting binfmt_misc" mount -t binfmt_misc binfmt_misc "$binfmt" \
    || die "cannot mount binfmt_misc (in a container, the host must mount it or run it --privileged)"
fi

if [[ ! -e $entry ]]; then
  log "registering qemu-aarch64 with binfmt_misc"
  as_root "registering qemu-aarch64" update-binfmts --enable qemu-aarch64 >&2 \
    || as_root "registering qemu-aarch64" update-binfmts --import qemu-aarch64 >&2 \
    || die "update-binfmts could not register qemu-aarch64 (see /usr/share/binfmts/qemu-aarch64)"
fi
grep -qx enabled "$entry" || die "$entry exists but is disabled (update-binfmts --enable qemu-aarch64)"
grep -q '^flags:.*F' "$entry" \
  || die "$entry lacks the F (fix-binary) flag, so containers without qemu inside cannot run arm64 binaries; re-register it with update-binfmts --import qemu-aarch64 from Debian's qemu-user-static"

# The check: a 132-byte static aarch64 ELF (movz x0, #42; movz x8, #93 (exit); svc #0), run
# directly, so through binfmt_misc as the kernel runs any arm64 binary: it must exit with 42.
probe=$(mktemp /tmp/arm64-probe.XXXXXX)
trap 'rm -f "$probe"' EXIT
base64 -d >"$probe" <<'ELF'
f0VMRgIBAQAAAAAAAAAAAAIAtwABAAAAeABAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAEAAOAABAAAAAAAAAAEAAAAFAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAAhAAAAAAAAACEAAAAAAAAAAAQAAAAAAAAQAWA0qgLgNIBAADU
ELF
chmod +x "$probe"
status=0
timeout 30 "$probe" || status=$?
[[ $status == 42 ]] || die "an aarch64 binary did not run under emulation (exit $status, expected 42); see $entry"
log "aarch64 binaries run under $(sed -n 's/^interpreter //p' "$entry")"
