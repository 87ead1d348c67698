// Original file: protos/mrl/v1/encoder.proto

import type { Tensor as _mrl_v1_Tensor, Tensor__Output as _mrl_v1_Tensor__Output } from '../../mrl/v1/Tensor';

export interface EncodeRequest {
  /**
   * An encoded image (PNG or JPEG). It is converted to the bundle's input spec.
   */
  'image'?: (Buffer | Uint8Array | string);
  /**
   * Preprocessed pixels as the bundle expects them (28x28, scaled to [0, 1]).
   */
  'tensor'?: (_mrl_v1_Tensor | null);
  /**
   * Return only the first `dimension` values; 0 means the full embedding.
   * Must be 0 or one of the bundle's nesting sizes.
   */
  'dimension'?: (number);
  /**
   * L2-normalise the returned prefix.
   */
  'normalize'?: (boolean);
  'input'?: "image"|"tensor";
}

export interface EncodeRequest__Output {
  /**
   * An encoded image (PNG or JPEG). It is converted to the bundle's input spec.
   */
  'image'?: (Buffer);
  /**
   * Preprocessed pixels as the bundle expects them (28x28, scaled to [0, 1]).
   */
  'tensor'?: (_mrl_v1_Tensor__Output | null);
  /**
   * Return only the first `dimension` values; 0 means the full embedding.
   * Must be 0 or one of the bundle's nesting sizes.
   */
  'dimension': (number);
  /**
   * L2-normalise the returned prefix.
   */
  'normalize': (boolean);
  'input'?: "image"|"tensor";
}
