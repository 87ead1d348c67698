// Original file: protos/mrl/v1/encoder.proto


/**
 * An input of a batch that could not be encoded; the others still are.
 */
export interface InputError {
  'index'?: (number);
  /**
   * A google.rpc.Code value, e.g. 3 (INVALID_ARGUMENT).
   */
  'code'?: (number);
  'message'?: (string);
}

/**
 * An input of a batch that could not be encoded; the others still are.
 */
export interface InputError__Output {
  'index': (number);
  /**
   * A google.rpc.Code value, e.g. 3 (INVALID_ARGUMENT).
   */
  'code': (number);
  'message': (string);
}
