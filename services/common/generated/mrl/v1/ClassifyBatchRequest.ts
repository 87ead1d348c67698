// Original file: protos/mrl/v1/classifier.proto

import type { ClassifyRequest as _mrl_v1_ClassifyRequest, ClassifyRequest__Output as _mrl_v1_ClassifyRequest__Output } from '../../mrl/v1/ClassifyRequest';
import type { Tensor as _mrl_v1_Tensor, Tensor__Output as _mrl_v1_Tensor__Output } from '../../mrl/v1/Tensor';
import type { Policy as _mrl_v1_Policy, Policy__Output as _mrl_v1_Policy__Output } from '../../mrl/v1/Policy';

/**
 * Set exactly one of `requests` or `images`.
 */
export interface ClassifyBatchRequest {
  /**
   * Requests, each with its own input and options.
   */
  'requests'?: (_mrl_v1_ClassifyRequest)[];
  /**
   * Or many preprocessed images packed in one tensor of shape [N, 28, 28] or [N, 1, 28, 28],
   * best as little-endian float32 `raw` bytes: the cheapest form to send and to parse. Each image
   * gets its own result; the options below apply to every one.
   */
  'images'?: (_mrl_v1_Tensor | null);
  /**
   * For `images`: as in ClassifyRequest.
   */
  'max_dimension'?: (number);
  'policy'?: (_mrl_v1_Policy);
  'top_k'?: (number);
}

/**
 * Set exactly one of `requests` or `images`.
 */
export interface ClassifyBatchRequest__Output {
  /**
   * Requests, each with its own input and options.
   */
  'requests': (_mrl_v1_ClassifyRequest__Output)[];
  /**
   * Or many preprocessed images packed in one tensor of shape [N, 28, 28] or [N, 1, 28, 28],
   * best as little-endian float32 `raw` bytes: the cheapest form to send and to parse. Each image
   * gets its own result; the options below apply to every one.
   */
  'images': (_mrl_v1_Tensor__Output | null);
  /**
   * For `images`: as in ClassifyRequest.
   */
  'max_dimension': (number);
  'policy': (_mrl_v1_Policy__Output);
  'top_k': (number);
}
