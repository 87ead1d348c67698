# syntax=docker/dockerfile:1
# The encoder and the cascade on CPU: one image, the command picks the service.
#
#   docker build -t REGISTRY/mrl-cascade:TAG .
#   docker run --rm -p 50051:50051 -p 9464:9464 REGISTRY/mrl-cascade:TAG dist/services/cascade/main.js
#   docker run --rm -p 50052:50052 -p 9465:9465 REGISTRY/mrl-cascade:TAG dist/services/encoder/main.js
#
# Node 22 LTS (the code also runs on 20, which is past its end of life). A build stage compiles
# the TypeScript with the dev dependencies; the image holds the compiled JavaScript (dist/), the
# production dependencies only, installed from the lockfile, and the default model; runs as uid 1000.
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# Every dependency, the compiler among them. --ignore-scripts: the prepare script (the build) waits
# for the sources below, and compiling needs no package's install script.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY matryoshka ./matryoshka
COPY services ./services
RUN npm run build

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# onnxruntime-node's optional download is skipped (.npmrc, and the variable it reads first): its
# CPU binaries ship in the npm package. --ignore-scripts: the prepare script would compile, and the
# compiler is a dev dependency; no production dependency needs its install script on CPU.
COPY package.json package-lock.json .npmrc ./
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# package.json: "type": "module" for dist/, and the root the services find protos/ and models/ from.
COPY package.json ./
COPY protos ./protos
COPY models/fashion-mnist-mrl ./models/fashion-mnist-mrl
# The node user of the official image; numeric so that runAsNonRoot can verify it.
USER 1000:1000
# cascade gRPC, encoder gRPC, cascade metrics, encoder metrics (the services' defaults).
EXPOSE 50051 50052 9464 9465
# Compiled JavaScript only: nothing compiles or transforms TypeScript at run time.
ENTRYPOINT ["node"]
CMD ["dist/services/cascade/main.js"]
