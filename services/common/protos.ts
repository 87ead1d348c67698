import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { join } from 'node:path';
import type { ProtoGrpcType as ClassifierProto } from './generated/classifier.js';
import type { ProtoGrpcType as EncoderProto } from './generated/encoder.js';
import type { ProtoGrpcType as InferenceProto } from './generated/grpc_service.js';
import { PACKAGE_ROOT } from './runtime.js';

/** The folder holding `mrl/v1/*.proto`. */
export const PROTO_ROOT = join(PACKAGE_ROOT, 'protos');

/** The same options `npm run gen:proto` passes to proto-loader-gen-types: the generated types match. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

const PROTO_FILES = ['mrl/v1/classifier.proto', 'mrl/v1/encoder.proto'];

/** The Open Inference Protocol's proto, under the same root as mrl/v1. */
const INFERENCE_PROTO_FILE = 'inference/grpc_service.proto';

export type MrlProto = ClassifierProto & EncoderProto;

/** `files`' package definition (for reflection) and typed services, parsed on the first call, once per process. */
function loadOnce<T>(files: string[]): () => { definition: protoLoader.PackageDefinition; proto: T } {
  let loaded: { definition: protoLoader.PackageDefinition; proto: T } | undefined;
  return () => {
    if (!loaded) {
      const definition = protoLoader.loadSync(files, LOADER_OPTIONS);
      loaded = { definition, proto: grpc.loadPackageDefinition(definition) as unknown as T };
    }
    return loaded;
  };
}

/** The `mrl.v1` services. */
export const loadMrlProtos = loadOnce<MrlProto>(PROTO_FILES);

/** The `inference` service (KServe V2). */
export const loadInferenceProtos = loadOnce<InferenceProto>([INFERENCE_PROTO_FILE]);
