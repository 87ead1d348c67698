// Original file: protos/mrl/v1/encoder.proto

import type { EncodeInput as _mrl_v1_EncodeInput, EncodeInput__Output as _mrl_v1_EncodeInput__Output } from '../../mrl/v1/EncodeInput';

export interface EncodeBatchRequest {
  'inputs'?: (_mrl_v1_EncodeInput)[];
  /**
   * As in EncodeRequest: 0 or a nesting size; applies to every input.
   */
  'dimension'?: (number);
  'normalize'?: (boolean);
}

export interface EncodeBatchRequest__Output {
  'inputs': (_mrl_v1_EncodeInput__Output)[];
  /**
   * As in EncodeRequest: 0 or a nesting size; applies to every input.
   */
  'dimension': (number);
  'normalize': (boolean);
}
