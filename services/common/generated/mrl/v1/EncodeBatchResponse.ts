// Original file: protos/mrl/v1/encoder.proto

import type { InputError as _mrl_v1_InputError, InputError__Output as _mrl_v1_InputError__Output } from '../../mrl/v1/InputError';

export interface EncodeBatchResponse {
  /**
   * inputs × dimension little-endian float32 values, row-major; rows of failed inputs are zero.
   */
  'embeddings'?: (Buffer | Uint8Array | string);
  /**
   * Values per row.
   */
  'dimension'?: (number);
  'full_dimension'?: (number);
  'model'?: (string);
  'errors'?: (_mrl_v1_InputError)[];
}

export interface EncodeBatchResponse__Output {
  /**
   * inputs × dimension little-endian float32 values, row-major; rows of failed inputs are zero.
   */
  'embeddings': (Buffer);
  /**
   * Values per row.
   */
  'dimension': (number);
  'full_dimension': (number);
  'model': (string);
  'errors': (_mrl_v1_InputError__Output)[];
}
