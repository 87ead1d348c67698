import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { EncodeBatchRequest as _mrl_v1_EncodeBatchRequest, EncodeBatchRequest__Output as _mrl_v1_EncodeBatchRequest__Output } from './mrl/v1/EncodeBatchRequest';
import type { EncodeBatchResponse as _mrl_v1_EncodeBatchResponse, EncodeBatchResponse__Output as _mrl_v1_EncodeBatchResponse__Output } from './mrl/v1/EncodeBatchResponse';
import type { EncodeInput as _mrl_v1_EncodeInput, EncodeInput__Output as _mrl_v1_EncodeInput__Output } from './mrl/v1/EncodeInput';
import type { EncodeRequest as _mrl_v1_EncodeRequest, EncodeRequest__Output as _mrl_v1_EncodeRequest__Output } from './mrl/v1/EncodeRequest';
import type { EncodeResponse as _mrl_v1_EncodeResponse, EncodeResponse__Output as _mrl_v1_EncodeResponse__Output } from './mrl/v1/EncodeResponse';
import type { EncoderClient as _mrl_v1_EncoderClient, EncoderDefinition as _mrl_v1_EncoderDefinition } from './mrl/v1/Encoder';
import type { InputError as _mrl_v1_InputError, InputError__Output as _mrl_v1_InputError__Output } from './mrl/v1/InputError';
import type { Tensor as _mrl_v1_Tensor, Tensor__Output as _mrl_v1_Tensor__Output } from './mrl/v1/Tensor';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  mrl: {
    v1: {
      EncodeBatchRequest: MessageTypeDefinition<_mrl_v1_EncodeBatchRequest, _mrl_v1_EncodeBatchRequest__Output>
      EncodeBatchResponse: MessageTypeDefinition<_mrl_v1_EncodeBatchResponse, _mrl_v1_EncodeBatchResponse__Output>
      EncodeInput: MessageTypeDefinition<_mrl_v1_EncodeInput, _mrl_v1_EncodeInput__Output>
      EncodeRequest: MessageTypeDefinition<_mrl_v1_EncodeRequest, _mrl_v1_EncodeRequest__Output>
      EncodeResponse: MessageTypeDefinition<_mrl_v1_EncodeResponse, _mrl_v1_EncodeResponse__Output>
      /**
       * Runs the model bundle's encoder and returns Matryoshka embeddings.
       */
      Encoder: SubtypeConstructor<typeof grpc.Client, _mrl_v1_EncoderClient> & { service: _mrl_v1_EncoderDefinition }
      InputError: MessageTypeDefinition<_mrl_v1_InputError, _mrl_v1_InputError__Output>
      Tensor: MessageTypeDefinition<_mrl_v1_Tensor, _mrl_v1_Tensor__Output>
    }
  }
}

