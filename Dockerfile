# syntax=docker/dockerfile:1
# The encoder and the cascade on CPU: one image, the command picks the service.
#
#   docker build -t REGISTRY/mrl-cascade:TAG .
#   docker run --rm -p 50051:50051 -p 9464:9464 REGISTRY/mrl-cascade:TAG services/cascade/main.ts
#   docker run --rm -p 50052:50052 -p 9465:9465 REGISTRY/mrl-cascade:TAG services/encoder/main.ts
#
# Node 22 LTS (the code also runs on 20, which is past its end of life); production
# dependencies only, installed from the lockfile; the default model inside; runs as uid 1000.
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# onnxruntime-node's optional download is skipped (.npmrc, and the variable it reads first): its
# CPU binaries ship in the npm package.
COPY package.json package-lock.json .npmrc ./
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY protos ./protos
COPY services ./services
COPY models/fashion-mnist-mrl ./models/fashion-mnist-mrl
# The node user of the official image; numeric so that runAsNonRoot can verify it.
USER 1000:1000
# cascade gRPC, encoder gRPC, cascade metrics, encoder metrics (the services' defaults).
EXPOSE 50051 50052 9464 9465
# TypeScript runs through tsx (a production dependency): no build step. tsx caches in /tmp,
# so give it a writable /tmp when the root filesystem is read-only (the k8s manifests do).
ENTRYPOINT ["node", "--import", "tsx"]
CMD ["services/cascade/main.ts"]
