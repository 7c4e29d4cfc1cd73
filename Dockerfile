# syntax=docker/dockerfile:1
#
# obo-sidecar container image.
#
#   docker build -t obo-sidecar:0.1.0 .
#   docker run --rm -v "$PWD/routes.yaml:/etc/obo-sidecar/routes.yaml:ro" obo-sidecar:0.1.0 \
#     --routes /etc/obo-sidecar/routes.yaml --admin-listen 0.0.0.0:15090
#
# Arguments after the image name are appended to `obo-sidecar run`. Other subcommands need the
# entry point replaced: docker run --rm --entrypoint /nodejs/bin/node obo-sidecar:0.1.0 dist/src/cli/main.js --version
#
# test/deploy/production-layout.test.ts builds the runtime stage's /app layout without Docker and
# runs a proxied request from it.

ARG NODE_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot

# Stage 1: compile the TypeScript sources with the full dependency set.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the "prepare" script runs the build, whose sources are not copied in yet.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
# Only src/: the image needs dist/src, and tsc skips the demo/ include when the folder is absent.
COPY src ./src
RUN npm run build

# Stage 2: production dependencies only, installed on the same Debian release as the runtime image.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# Stage 3: the runtime. Distroless has Node.js and no shell or package manager; the :nonroot tag
# runs as uid/gid 65532, the user the Helm chart's securityContext names.
FROM ${RUNTIME_IMAGE}
ARG RUNTIME_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="obo-sidecar" \
      org.opencontainers.image.description="Forward proxy sidecar that swaps an AI agent's user token for a scoped on-behalf-of token on every routed outbound call." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
# The CLI reads its version from package.json next to dist/.
COPY package.json ./

USER 65532:65532
# 15080: proxy listener (the CLI binds it to 127.0.0.1 unless --listen says otherwise).
# 15090: admin listener with /metrics, /healthz and /readyz.
EXPOSE 15080 15090

# Exec form, so node itself is PID 1 and receives SIGTERM from the container runtime directly; the
# CLI handles SIGTERM and SIGINT by draining in-flight requests. No init process is needed to reap
# zombies because the sidecar starts no child processes.
# --max-semi-space-size=8 caps V8's young generation at 8 MiB per semi-space. The token cache is
# long-lived data, and with V8's default the resident memory of 100,000 cached 1 KB tokens was about
# 280 MB over idle against about 170 MB with this cap (measured in-process on the 2-core development
# machine, Node 24.22). docs/benchmarks.md reads the flag from this line.
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=8", "dist/src/cli/main.js", "run"]
