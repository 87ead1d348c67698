import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { ClassifierClient as _mrl_v1_ClassifierClient, ClassifierDefinition as _mrl_v1_ClassifierDefinition } from './mrl/v1/Classifier';
import type { ClassifyBatchRequest as _mrl_v1_ClassifyBatchRequest, ClassifyBatchRequest__Output as _mrl_v1_ClassifyBatchRequest__Output } from './mrl/v1/ClassifyBatchRequest';
import type { ClassifyBatchResponse as _mrl_v1_ClassifyBatchResponse, ClassifyBatchResponse__Output as _mrl_v1_ClassifyBatchResponse__Output } from './mrl/v1/ClassifyBatchResponse';
import type { ClassifyBatchResult as _mrl_v1_ClassifyBatchResult, ClassifyBatchResult__Output as _mrl_v1_ClassifyBatchResult__Output } from './mrl/v1/ClassifyBatchResult';
import type { ClassifyRequest as _mrl_v1_ClassifyRequest, ClassifyRequest__Output as _mrl_v1_ClassifyRequest__Output } from './mrl/v1/ClassifyRequest';
import type { ClassifyResponse as _mrl_v1_ClassifyResponse, ClassifyResponse__Output as _mrl_v1_ClassifyResponse__Output } from './mrl/v1/ClassifyResponse';
import type { Embedding as _mrl_v1_Embedding, Embedding__Output as _mrl_v1_Embedding__Output } from './mrl/v1/Embedding';
import type { Prediction as _mrl_v1_Prediction, Prediction__Output as _mrl_v1_Prediction__Output } from './mrl/v1/Prediction';
import type { Stage as _mrl_v1_Stage, Stage__Output as _mrl_v1_Stage__Output } from './mrl/v1/Stage';
import type { Tensor as _mrl_v1_Tensor, Tensor__Output as _mrl_v1_Tensor__Output } from './mrl/v1/Tensor';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  mrl: {
    v1: {
      /**
       * Adaptive classification over Matryoshka embeddings: the smallest confident prefix answers.
       */
      Classifier: SubtypeConstructor<typeof grpc.Client, _mrl_v1_ClassifierClient> & { service: _mrl_v1_ClassifierDefinition }
      ClassifyBatchRequest: MessageTypeDefinition<_mrl_v1_ClassifyBatchRequest, _mrl_v1_ClassifyBatchRequest__Output>
      ClassifyBatchResponse: MessageTypeDefinition<_mrl_v1_ClassifyBatchResponse, _mrl_v1_ClassifyBatchResponse__Output>
      ClassifyBatchResult: MessageTypeDefinition<_mrl_v1_ClassifyBatchResult, _mrl_v1_ClassifyBatchResult__Output>
      ClassifyRequest: MessageTypeDefinition<_mrl_v1_ClassifyRequest, _mrl_v1_ClassifyRequest__Output>
      ClassifyResponse: MessageTypeDefinition<_mrl_v1_ClassifyResponse, _mrl_v1_ClassifyResponse__Output>
      Embedding: MessageTypeDefinition<_mrl_v1_Embedding, _mrl_v1_Embedding__Output>
      Policy: EnumTypeDefinition
      Prediction: MessageTypeDefinition<_mrl_v1_Prediction, _mrl_v1_Prediction__Output>
      Stage: MessageTypeDefinition<_mrl_v1_Stage, _mrl_v1_Stage__Output>
      Tensor: MessageTypeDefinition<_mrl_v1_Tensor, _mrl_v1_Tensor__Output>
    }
  }
}

