// Original file: protos/inference/grpc_service.proto


export interface ModelMetadataRequest {
  'name'?: (string);
  /**
   * Empty: the server picks the version.
   */
  'version'?: (string);
}

export interface ModelMetadataRequest__Output {
  'name': (string);
  /**
   * Empty: the server picks the version.
   */
  'version': (string);
}
