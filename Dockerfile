# Paddock's deploy image, built the way Leptos apps ship: a build stage runs
# the release build (server binary + the site's CSS/JS/WASM), and a slim
# Debian stage runs it as the unprivileged user `paddock` with everything it
# keeps under one volume, /data. Build it on any machine with registry access:
#
#     docker build -t paddock .
#     docker run -p 8080:8080 -v paddock-data:/data paddock
#
# On a machine without a registry, scripts/build-deploy-image builds the
# runtime stage below (from `FROM … AS runtime` to the end of this file,
# unchanged) over a locally made Debian base and locally built artifacts.
# Migrations are compiled into the binary (sqlx::migrate!).

FROM rust:1-bookworm AS build
WORKDIR /src
# scripts/setup --build installs what the build needs and nothing else:
# cargo-leptos, wasm-bindgen-cli at Cargo.lock's version, Node.js and the
# npm tools (Tailwind CSS). First, from what names those alone, so that a
# change to the sources reuses this layer.
COPY Cargo.lock package.json package-lock.json ./
COPY scripts scripts
RUN rustup target add wasm32-unknown-unknown && scripts/setup --build
COPY . .
RUN scripts/leptos build --release --precompress --cargo-locked \
    && agent=$(scripts/build-sandbox-agent | tail -n 1) \
    && mkdir -p /out \
    && cp target/release/paddock /out/paddock \
    && cp "$agent" /out/paddock-sandbox-agent \
    && cp -r target/site /out/site

FROM debian:bookworm-slim AS runtime
# ca-certificates: the model API and git over https; git: the server clones
# and pushes sessions' repositories; bubblewrap: sandboxes without Docker,
# where the platform allows user namespaces; tini: reaps what commands leave
# behind, since Paddock is the container's first process.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates git bubblewrap tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin paddock \
    && mkdir -p /data \
    && chown paddock:paddock /data
COPY --from=build /out/paddock /usr/local/bin/paddock
# The sandbox agent (a static binary), uploaded into each sandbox on a
# Docker host on another machine (DOCKER_HOST over TCP).
COPY --from=build /out/paddock-sandbox-agent /usr/local/lib/paddock/paddock-sandbox-agent
COPY --from=build /out/site /usr/share/paddock/site
COPY deploy/paddock-entrypoint /usr/local/bin/paddock-entrypoint
# Everything Paddock keeps is under /data: the SQLite database (unless
# DATABASE_URL names PostgreSQL), the master key of the credential store,
# the workspaces, the server's git clones and the Claude Code homes.
ENV PORT=8080 \
    DATABASE_URL=sqlite:///data/paddock.db \
    WORKSPACE_ROOT=/data/workspaces \
    PADDOCK_MASTER_KEY_FILE=/data/master.key \
    PADDOCK_GIT_ROOT=/data/git \
    PADDOCK_CLAUDE_CODE_ROOT=/data/claude-code \
    LEPTOS_SITE_ROOT=/usr/share/paddock/site
# /data is meant for a volume (`-v paddock-data:/data`); no VOLUME line,
# which some platforms (Railway) refuse in favour of their own volumes.
WORKDIR /data
EXPOSE 8080
# The probe runs as `paddock` too: nothing in this image runs as root
# after the entrypoint's first lines (in a container started as root, it
# drops root first; in one started as the user, it is that user already).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "if [ \"$(id -u)\" = 0 ]; then exec setpriv --reuid=paddock --regid=paddock --clear-groups --no-new-privs paddock health; else exec paddock health; fi"]
# Paddock never runs as root: the entrypoint gives /data (a volume the
# platform may mount owned by root) to the user `paddock`, then runs the
# command as that user.
ENTRYPOINT ["/usr/bin/tini", "--", "paddock-entrypoint"]
CMD ["paddock"]
