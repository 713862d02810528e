# spiffe-broker container image (docs/containers.md, docs/kubernetes.md).
#
#   docker build -t spiffe-broker:dev .
#   DOCKER_BUILDKIT=0 docker build --build-arg NODE_IMAGE=<local node 24 image> -t spiffe-broker:dev .
#
# Works with BuildKit and with the classic builder (no `# syntax` line, no RUN --mount, no
# --secret), so it builds where only a local base image exists (air-gapped; scripts/docker-build.sh).
#
# Two stages. The builder installs every dependency, compiles TypeScript, then prunes to production
# dependencies and strips what never runs (type declarations, source maps, docs). The runtime stage
# adds exactly one layer of files to its base, /app (owned by root, read-only to the process), runs
# as the numeric non-root user 65532 and writes nothing outside its state directory and /tmp, so it
# runs with a read-only root filesystem. No registry work happens in the runtime stage.
#
# Build arguments:
#   NODE_IMAGE   base of both stages; default the official node:24-bookworm-slim
#   NPM_CA_FILE  a CA bundle file IN THE BUILD CONTEXT for npm's TLS (an intercepting proxy): used by
#                the builder stage only, never copied into the runtime image
#   SOURCE_MAPS  "true" to ship dist/**/*.js.map and run node with --enable-source-maps; default
#                unset: no source maps
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS builder
WORKDIR /src
ARG NPM_CA_FILE=
# ${NPM_CA_FILE} is empty by default, which copies the two manifests only.
COPY package.json package-lock.json ${NPM_CA_FILE} ./
# --ignore-scripts: "prepare" compiles the sources, which are not copied yet.
RUN if [ -n "$NPM_CA_FILE" ]; then \
      export NODE_EXTRA_CA_CERTS="/src/$NPM_CA_FILE" npm_config_cafile="/src/$NPM_CA_FILE"; \
    fi \
 && npm ci --no-audit --no-fund --ignore-scripts \
 && if [ -n "$NPM_CA_FILE" ]; then rm -f "/src/$NPM_CA_FILE"; fi
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY proto ./proto
ARG SOURCE_MAPS=
RUN npx tsc -p tsconfig.build.json --declaration false --sourceMap "${SOURCE_MAPS:-false}"
# The runtime tree: production dependencies only (npm prune needs no registry), without what
# Node never loads (scripts/docker-prune-node-modules.mjs: TypeScript, source maps, docs, tests,
# other platforms' prebuilt addons). Licences stay.
COPY scripts/docker-prune-node-modules.mjs /tmp/
RUN npm prune --omit=dev --no-audit --no-fund --ignore-scripts \
 && node /tmp/docker-prune-node-modules.mjs node_modules \
 && mkdir -p /out/app \
 && mv package.json node_modules dist proto /out/app/

FROM ${NODE_IMAGE} AS runtime
# The base's package managers have no use at run time: take them off PATH (their bytes stay in the
# base's layers, shared with every image on that base). One small layer; it also creates the state
# directory for `docker run` without a volume.
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
      /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* /usr/local/include/node /usr/local/share/doc/node \
 && mkdir -p /var/lib/spiffe-broker /etc/spiffe-broker \
 && chown 65532:65532 /var/lib/spiffe-broker \
 && chmod 0700 /var/lib/spiffe-broker
ARG SOURCE_MAPS=
ENV NODE_ENV=production \
    HOME=/tmp \
    NODE_OPTIONS=${SOURCE_MAPS:+--enable-source-maps}
WORKDIR /app
COPY --from=builder /out/app /app
USER 65532:65532
VOLUME ["/var/lib/spiffe-broker"]
EXPOSE 8443 8088 8089 8090
# A small young generation (4 MiB semi-spaces): the broker allocates in bursts (a poll cycle, a cold
# start) and V8's default headroom made RSS swing ~80 MiB above what it retains (docs/scaling.md).
# The old-space cap depends on the peer count: the manifests set it in NODE_OPTIONS.
# No memory reducer: its idle-time full GCs, repeated whenever a quiet broker did a little work,
# were ~0.1 % of a core at 1,000 peers, a fifth of the broker's steady CPU (docs/benchmarks.md).
# Node refuses this flag in NODE_OPTIONS, so it lives here and in the npm bin's shebang.
ENTRYPOINT ["node", "--max-semi-space-size=4", "--no-memory-reducer", "dist/cli/main.js"]
CMD ["run", "--config", "/etc/spiffe-broker/config.yaml"]
