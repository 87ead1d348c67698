import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { EncodeRequest as _mrl_v1_EncodeRequest, EncodeRequest__Output as _mrl_v1_EncodeRequest__Output } from './mrl/v1/EncodeRequest';
import type { EncodeResponse as _mrl_v1_EncodeResponse, EncodeResponse__Output as _mrl_v1_EncodeResponse__Output } from './mrl/v1/EncodeResponse';
import type { EncoderClient as _mrl_v1_EncoderClient, EncoderDefinition as _mrl_v1_EncoderDefinition } from './mrl/v1/Encoder';
import type { Tensor as _mrl_v1_Tensor, Tensor__Output as _mrl_v1_Tensor__Output } from './mrl/v1/Tensor';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  mrl: {
    v1: {
      EncodeRequest: MessageTypeDefinition<_mrl_v1_EncodeRequest, _mrl_v1_EncodeRequest__Output>
      EncodeResponse: MessageTypeDefinition<_mrl_v1_EncodeResponse, _mrl_v1_EncodeResponse__Output>
      /**
       * Runs the model bundle's encoder and returns Matryoshka embeddings.
       */
      Encoder: SubtypeConstructor<typeof grpc.Client, _mrl_v1_EncoderClient> & { service: _mrl_v1_EncoderDefinition }
      Tensor: MessageTypeDefinition<_mrl_v1_Tensor, _mrl_v1_Tensor__Output>
    }
  }
}

