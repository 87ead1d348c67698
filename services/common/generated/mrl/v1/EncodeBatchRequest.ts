// Original file: protos/mrl/v1/encoder.proto

import type { EncodeInput as _mrl_v1_EncodeInput, EncodeInput__Output as _mrl_v1_EncodeInput__Output } from '../../mrl/v1/EncodeInput';
import type { Tensor as _mrl_v1_Tensor, Tensor__Output as _mrl_v1_Tensor__Output } from '../../mrl/v1/Tensor';

/**
 * Set exactly one of `inputs` or `images`.
 */
export interface EncodeBatchRequest {
  'inputs'?: (_mrl_v1_EncodeInput)[];
  /**
   * As in EncodeRequest: 0 or a nesting size; applies to every input.
   */
  'dimension'?: (number);
  'normalize'?: (boolean);
  /**
   * Or preprocessed images packed in one tensor of shape [N, 28, 28] or [N, 1, 28, 28] (best as
   * `raw` bytes); an image with a non-finite value fails alone, as an input would.
   */
  'images'?: (_mrl_v1_Tensor | null);
}

/**
 * Set exactly one of `inputs` or `images`.
 */
export interface EncodeBatchRequest__Output {
  'inputs': (_mrl_v1_EncodeInput__Output)[];
  /**
   * As in EncodeRequest: 0 or a nesting size; applies to every input.
   */
  'dimension': (number);
  'normalize': (boolean);
  /**
   * Or preprocessed images packed in one tensor of shape [N, 28, 28] or [N, 1, 28, 28] (best as
   * `raw` bytes); an image with a non-finite value fails alone, as an input would.
   */
  'images': (_mrl_v1_Tensor__Output | null);
}
