// Original file: protos/mrl/v1/encoder.proto

import type { Tensor as _mrl_v1_Tensor, Tensor__Output as _mrl_v1_Tensor__Output } from '../../mrl/v1/Tensor';

/**
 * One input of a batch.
 */
export interface EncodeInput {
  'image'?: (Buffer | Uint8Array | string);
  'tensor'?: (_mrl_v1_Tensor | null);
  'input'?: "image"|"tensor";
}

/**
 * One input of a batch.
 */
export interface EncodeInput__Output {
  'image'?: (Buffer);
  'tensor'?: (_mrl_v1_Tensor__Output | null);
  'input'?: "image"|"tensor";
}
