# syntax=docker/dockerfile:1
# amlcert's image: compiled JavaScript and production dependencies only, on a distroless Node.js 24 runtime (no
# shell, no npm, no package manager), as a numeric non-root user, on a read-only root filesystem.
#   docker build -t <registry>/amlcert:0.1.0 .
#
# Base images are pinned by digest, so a rebuild gets the same bytes. To bump them (a Node.js 24 patch release or a
# Debian security update), resolve the tag to its current digest and replace both lines below (or let Dependabot /
# Renovate's docker updater do it):
#   docker buildx imagetools inspect node:24-bookworm-slim --format '{{json .Manifest.Digest}}'
#   docker buildx imagetools inspect gcr.io/distroless/nodejs24-debian12 --format '{{json .Manifest.Digest}}'
# then build and run `docker run --rm <image> version`. Keep both on the same Node.js major (24).
#
# test/integration/dockerfile.test.ts lints this file and replays its steps without a container engine: the COPY
# lines below are the one list of what goes into the image, and the test reads them from here.

# --- production dependencies only, from the lockfile (no dev dependencies ever reach the runtime stage) ---
FROM node:24-bookworm-slim@sha256:6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- the compiler and the sources: dist/src ---
FROM node:24-bookworm-slim@sha256:6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json

# --- runtime ---
FROM gcr.io/distroless/nodejs24-debian12@sha256:b35a10df56aa17825e81e836ff70fe3c27002809dd94e6bfd655ed05bac52230
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/dist/src ./dist/src
# 65532 is distroless's `nonroot`; numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
# The pods set the same uid and gid (deploy/overlays/*), a read-only root filesystem and an emptyDir on /tmp.
USER 65532:65532
# PID 1 is node itself, no tini: amlcert handles SIGTERM and SIGINT (src/cli.ts: abort the run in flight, remove
# its TXT values, release the Lease, exit within 25 s) and starts no child processes, so there is nothing to reap.
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli.js"]
CMD ["renew", "--config", "/etc/amlcert/amlcert.yaml"]
