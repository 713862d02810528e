# syntax=docker/dockerfile:1
# spiffe-broker container image (docs/kubernetes.md).
#
#   docker build -t spiffe-broker:dev .
#
# Two stages: the builder installs every dependency and compiles TypeScript; the runtime stage
# holds production dependencies, the compiled JavaScript and the .proto files only, runs as a
# numeric non-root user and writes nothing outside its mounted state directory and /tmp, so it
# runs with a read-only root filesystem.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS builder
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: "prepare" compiles the sources, which are not copied yet.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY proto ./proto
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOME=/tmp
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; no lifecycle scripts (the build already happened).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf /tmp/* /root/.npm
COPY --from=builder /src/dist ./dist
COPY proto ./proto
# The state directory is a volume in Kubernetes; it exists here for `docker run` without one.
RUN mkdir -p /var/lib/spiffe-broker /etc/spiffe-broker \
 && chown 65532:65532 /var/lib/spiffe-broker
USER 65532:65532
VOLUME ["/var/lib/spiffe-broker"]
EXPOSE 8443 8088 8089 8090
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["run", "--config", "/etc/spiffe-broker/config.yaml"]
