// Original file: protos/mrl/v1/classifier.proto

import type { ClassifyResponse as _mrl_v1_ClassifyResponse, ClassifyResponse__Output as _mrl_v1_ClassifyResponse__Output } from '../../mrl/v1/ClassifyResponse';

/**
 * One request's outcome: a response when code is 0 (OK), else the error it would have got alone.
 */
export interface ClassifyBatchResult {
  'response'?: (_mrl_v1_ClassifyResponse | null);
  /**
   * A google.rpc.Code value.
   */
  'code'?: (number);
  'message'?: (string);
}

/**
 * One request's outcome: a response when code is 0 (OK), else the error it would have got alone.
 */
export interface ClassifyBatchResult__Output {
  'response': (_mrl_v1_ClassifyResponse__Output | null);
  /**
   * A google.rpc.Code value.
   */
  'code': (number);
  'message': (string);
}
