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

# docker, through as_root when this user may not use the daemon's socket.
dock() {
    if [[ $(id -u) == 0 || -n ${DOCKER_HOST:-} || -w /var/run/docker.sock ]]; then docker "$@"; else as_root docker "$@"; fi
}

# Starts dockerd in the background unless a daemon already answers. No bridge
# and no iptables: agent containers run with --network none, and the machine's
# firewall is none of Paddock's business. The daemon outlives this script.
ensure_dockerd() {
    dock info >/dev/null 2>&1 && return 0
    local log_file=/var/log/paddock-dockerd.log i
    log "starting dockerd (log: $log_file)"
    as_root sh -c "setsid nohup dockerd --storage-driver=overlay2 --iptables=false --bridge=none >$log_file 2>&1 </dev/null &"
    for ((i = 0; i < 60; i++)); do
        dock info >/dev/null 2>&1 && return 0
        sleep 1
    done
    as_root tail -n 20 "$log_file" >&2 || true
    die "dockerd did not answer within 60 s (log: $log_file)"
}
