# amlcert container: Node.js 24 LTS (the same major as the tests), compiled JavaScript only, non-root,
# read-only root filesystem friendly. Build: docker build -t amlcert:0.1.0 .
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
# uid 1000 is the image's `node` user; the CronJob also sets runAsNonRoot and drops every capability
USER 1000:1000
ENTRYPOINT ["node", "/app/dist/src/cli.js"]
CMD ["renew", "--config", "/etc/amlcert/amlcert.yaml"]
