# Shared by the scripts in this folder; sourced, not run.
# shellcheck shell=bash

CARGO_LEPTOS_VERSION=0.3.11
export PATH="$root/node_modules/.bin:$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

# version_ge A B: A >= B, for dotted versions.
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

# The version Cargo.lock pins for a crate.
lock_version() {
    awk -v n="name = \"$1\"" '$0 == n { getline; gsub(/version = |"/, ""); print; exit }' "$root/Cargo.lock"
}

# True when the active rustup toolchain can build wasm32 by itself.
has_wasm32_std() {
    [[ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-unknown-unknown/lib" ]]
}

# The target dir cargo uses (CARGO_TARGET_DIR or ./target).
target_dir() { echo "${CARGO_TARGET_DIR:-$root/target}"; }
