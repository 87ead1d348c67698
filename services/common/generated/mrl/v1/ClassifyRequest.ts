// Original file: protos/mrl/v1/classifier.proto

import type { Tensor as _mrl_v1_Tensor, Tensor__Output as _mrl_v1_Tensor__Output } from '../../mrl/v1/Tensor';
import type { Embedding as _mrl_v1_Embedding, Embedding__Output as _mrl_v1_Embedding__Output } from '../../mrl/v1/Embedding';
import type { Policy as _mrl_v1_Policy, Policy__Output as _mrl_v1_Policy__Output } from '../../mrl/v1/Policy';

export interface ClassifyRequest {
  /**
   * An encoded image (PNG or JPEG).
   */
  'image'?: (Buffer | Uint8Array | string);
  /**
   * Preprocessed pixels, as for mrl.v1.Encoder.
   */
  'tensor'?: (_mrl_v1_Tensor | null);
  /**
   * Classify this embedding without calling the encoder.
   */
  'embedding'?: (_mrl_v1_Embedding | null);
  /**
   * Largest prefix the cascade may use; 0 means no cap. Otherwise it must be a nesting size.
   */
  'max_dimension'?: (number);
  'policy'?: (_mrl_v1_Policy);
  /**
   * How many classes to return in `top`; 0 means 1.
   */
  'top_k'?: (number);
  'input'?: "image"|"tensor"|"embedding";
}

export interface ClassifyRequest__Output {
  /**
   * An encoded image (PNG or JPEG).
   */
  'image'?: (Buffer);
  /**
   * Preprocessed pixels, as for mrl.v1.Encoder.
   */
  'tensor'?: (_mrl_v1_Tensor__Output | null);
  /**
   * Classify this embedding without calling the encoder.
   */
  'embedding'?: (_mrl_v1_Embedding__Output | null);
  /**
   * Largest prefix the cascade may use; 0 means no cap. Otherwise it must be a nesting size.
   */
  'max_dimension': (number);
  'policy': (_mrl_v1_Policy__Output);
  /**
   * How many classes to return in `top`; 0 means 1.
   */
  'top_k': (number);
  'input'?: "image"|"tensor"|"embedding";
}
