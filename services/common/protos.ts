import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { join } from 'node:path';
import type { ProtoGrpcType as ClassifierProto } from './generated/classifier.js';
import type { ProtoGrpcType as EncoderProto } from './generated/encoder.js';
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

export const PROTO_FILES = ['mrl/v1/classifier.proto', 'mrl/v1/encoder.proto'];

export type MrlProto = ClassifierProto & EncoderProto;

let loaded: { definition: protoLoader.PackageDefinition; proto: MrlProto } | undefined;

/** The package definition (for reflection) and the typed `mrl.v1` services, parsed once per process. */
export function loadMrlProtos(): { definition: protoLoader.PackageDefinition; proto: MrlProto } {
  if (!loaded) {
    const definition = protoLoader.loadSync(PROTO_FILES, LOADER_OPTIONS);
    loaded = { definition, proto: grpc.loadPackageDefinition(definition) as unknown as MrlProto };
  }
  return loaded;
}
