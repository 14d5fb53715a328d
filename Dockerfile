# syntax=docker/dockerfile:1
# Production image: production dependencies only, NODE_ENV=production (API_TOKENS, GRANT_LINK_SECRET
# and WEBHOOK_SECRET_KEY are then required),
# a non-root user, a health check on /readyz, and node as PID 1's only child (compose runs it with
# init: true), started directly so SIGTERM reaches the app and it drains (SHUTDOWN_TIMEOUT_MS).
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# tsx (TypeScript at run time) is a production dependency; dev tools (jest, tsc, swc) are left out.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE} AS production
ENV NODE_ENV=production \
    PORT=3000 \
    HOST=0.0.0.0
WORKDIR /app
# Root owns the code (the app cannot rewrite itself); the app runs as the image's "node" user.
COPY --from=deps /app/node_modules ./node_modules
COPY . .
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
CMD ["node", "--import", "tsx", "src/main.ts"]
