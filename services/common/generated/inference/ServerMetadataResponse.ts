// Original file: protos/inference/grpc_service.proto


export interface ServerMetadataResponse {
  'name'?: (string);
  'version'?: (string);
  /**
   * Protocol extensions the server supports.
   */
  'extensions'?: (string)[];
}

export interface ServerMetadataResponse__Output {
  'name': (string);
  'version': (string);
  /**
   * Protocol extensions the server supports.
   */
  'extensions': (string)[];
}
