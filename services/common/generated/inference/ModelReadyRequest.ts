// Original file: protos/inference/grpc_service.proto


export interface ModelReadyRequest {
  'name'?: (string);
  /**
   * Empty: the server picks the version.
   */
  'version'?: (string);
}

export interface ModelReadyRequest__Output {
  'name': (string);
  /**
   * Empty: the server picks the version.
   */
  'version': (string);
}
