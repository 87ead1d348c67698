// Original file: protos/mrl/v1/classifier.proto

import type { ClassifyRequest as _mrl_v1_ClassifyRequest, ClassifyRequest__Output as _mrl_v1_ClassifyRequest__Output } from '../../mrl/v1/ClassifyRequest';

export interface ClassifyBatchRequest {
  'requests'?: (_mrl_v1_ClassifyRequest)[];
}

export interface ClassifyBatchRequest__Output {
  'requests': (_mrl_v1_ClassifyRequest__Output)[];
}
