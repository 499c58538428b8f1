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

# Makes runtime NAME (the OCI runtime at PATH, given ARGS...) one the Docker
# engine has: sets it in /etc/docker/daemon.json's "runtimes" (keeping what
# else the file says) and has the running daemon reload it (SIGHUP), no
# restart.
ensure_docker_runtime() {
    local name=$1 path=$2 i want
    shift 2
    want=$(python3 -c 'import json, sys; print(json.dumps({"path": sys.argv[1], "runtimeArgs": sys.argv[2:]}, sort_keys=True))' "$path" "$@")
    runtime_loaded() {
        dock info --format '{{json .Runtimes}}' |
            python3 -c 'import json, sys; r = json.load(sys.stdin).get(sys.argv[1]); print(json.dumps({"path": r["path"], "runtimeArgs": r.get("runtimeArgs") or []}, sort_keys=True) if r else "")' "$name" |
            grep -qxF "$want"
    }
    runtime_loaded && return 0
    log "setting the $name runtime of the Docker engine (/etc/docker/daemon.json)"
    as_root mkdir -p /etc/docker
    as_root python3 - "$name" "$want" <<'PY'
import json, os, sys
name, want = sys.argv[1], json.loads(sys.argv[2])
file = "/etc/docker/daemon.json"
config = json.load(open(file)) if os.path.exists(file) else {}
config.setdefault("runtimes", {})[name] = want
with open(file + ".new", "w") as f:
    json.dump(config, f, indent=2)
os.replace(file + ".new", file)
PY
    as_root pkill -HUP -x dockerd
    for ((i = 0; i < 20; i++)); do
        runtime_loaded && return 0
        sleep 0.5
    done
    die "the Docker engine did not take the $name runtime (see /etc/docker/daemon.json)"
}

# The Debian mirror apt uses for suite $1: deb822 .sources files first, then
# one-line sources.list entries.
debian_mirror() {
    local suite=$1 f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        uri=$(awk -v suite="$suite" '
            function flush() { if (deb && has_suite && !off && uri != "") { print uri; found = 1; exit } deb = has_suite = off = 0; uri = "" }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]*#/ { next }
            tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
            tolower($1) == "uris:" { uri = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has_suite = 1 }
            tolower($1) == "enabled:" && tolower($2) == "no" { off = 1 }
            END { if (!found) flush() }' "$f")
        [[ -n $uri ]] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        # deb [options] URI SUITE COMPONENT...
        uri=$(sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }')
        [[ -n $uri ]] && { echo "$uri"; return; }
    done
}

# debian_base_image REPOSITORY SUITE VARIANT PACKAGES: prints the tag of a
# Debian root filesystem made by debootstrap (VARIANT, plus the
# comma-separated PACKAGES, if any) and `docker import`ed as
# REPOSITORY:<hash of what shapes it>, made unless it exists. No registry:
# only the Debian mirror apt already uses (PADDOCK_DEBIAN_MIRROR overrides
# it). Change base_steps whenever the steps below change.
debian_base_image() {
    local repository=$1 suite=$2 variant=$3 packages=$4 mirror rootfs base
    local base_steps="debootstrap $variant $suite; drop caches, docs, man pages, translations"
    base=$repository:$(printf '%s\n%s\n' "$base_steps" "$packages" | sha256sum | cut -c1-12)
    echo "$base"
    if dock image inspect "$base" >/dev/null 2>&1; then
        log "reusing base image $base"
        return
    fi
    mirror=${PADDOCK_DEBIAN_MIRROR:-$(debian_mirror "$suite")}
    [[ -n $mirror ]] || die "no Debian mirror for $suite in /etc/apt: set PADDOCK_DEBIAN_MIRROR"
    command -v debootstrap >/dev/null || die "debootstrap is missing: run scripts/setup"
    rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/paddock-rootfs.XXXXXX")
    # Global: the EXIT trap runs it after this function returns.
    debian_base_rootfs=$rootfs
    debian_base_cleanup() {
        local rootfs=$debian_base_rootfs
        # debootstrap mounts proc and sys inside the rootfs and can leave them
        # behind when it fails: unmount them, and never let rm cross a mount.
        # shellcheck disable=SC2016 # expanded by the inner sh
        as_root sh -c 'awk -v d="$1/" "index(\$2, d) == 1 { print \$2 }" /proc/mounts | sort -r | xargs -r -n1 umount -l' sh "$rootfs" || true
        as_root rm -rf --one-file-system "$rootfs"
    }
    trap debian_base_cleanup EXIT
    log "debootstrap $variant $suite from $mirror: $packages"
    as_root debootstrap --variant="$variant" ${packages:+--include="$packages"} "$suite" "$rootfs" "$mirror" \
        >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; die "debootstrap failed (log: $rootfs.log)"; }
    rm -f "$rootfs.log"
    # Dead weight in an image no one reads documentation in (about 70 MB);
    # the copyright files stay.
    # shellcheck disable=SC2016 # expanded by the inner sh
    as_root sh -c 'cd "$1" && rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/* usr/share/man/* usr/share/info/* \
        && find usr/share/locale -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + \
        && find usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete \
        && find usr/share/doc -mindepth 1 -type d -empty -delete' sh "$rootfs"
    log "importing $base"
    as_root tar --numeric-owner -C "$rootfs" -c . | dock import -m "$base_steps${packages:+: $packages}" - "$base" >/dev/null
    debian_base_cleanup
    trap - EXIT
}
