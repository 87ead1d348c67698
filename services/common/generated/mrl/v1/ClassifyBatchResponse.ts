// Original file: protos/mrl/v1/classifier.proto

import type { ClassifyBatchResult as _mrl_v1_ClassifyBatchResult, ClassifyBatchResult__Output as _mrl_v1_ClassifyBatchResult__Output } from '../../mrl/v1/ClassifyBatchResult';

export interface ClassifyBatchResponse {
  /**
   * In request order.
   */
  'results'?: (_mrl_v1_ClassifyBatchResult)[];
}

export interface ClassifyBatchResponse__Output {
  /**
   * In request order.
   */
  'results': (_mrl_v1_ClassifyBatchResult__Output)[];
}
