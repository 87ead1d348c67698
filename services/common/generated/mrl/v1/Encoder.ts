// Original file: protos/mrl/v1/encoder.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { EncodeRequest as _mrl_v1_EncodeRequest, EncodeRequest__Output as _mrl_v1_EncodeRequest__Output } from '../../mrl/v1/EncodeRequest';
import type { EncodeResponse as _mrl_v1_EncodeResponse, EncodeResponse__Output as _mrl_v1_EncodeResponse__Output } from '../../mrl/v1/EncodeResponse';

/**
 * Runs the model bundle's encoder and returns Matryoshka embeddings.
 */
export interface EncoderClient extends grpc.Client {
  Encode(argument: _mrl_v1_EncodeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  Encode(argument: _mrl_v1_EncodeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mrl_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  Encode(argument: _mrl_v1_EncodeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  Encode(argument: _mrl_v1_EncodeRequest, callback: grpc.requestCallback<_mrl_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  encode(argument: _mrl_v1_EncodeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  encode(argument: _mrl_v1_EncodeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mrl_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  encode(argument: _mrl_v1_EncodeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  encode(argument: _mrl_v1_EncodeRequest, callback: grpc.requestCallback<_mrl_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  
}

/**
 * Runs the model bundle's encoder and returns Matryoshka embeddings.
 */
export interface EncoderHandlers extends grpc.UntypedServiceImplementation {
  Encode: grpc.handleUnaryCall<_mrl_v1_EncodeRequest__Output, _mrl_v1_EncodeResponse>;
  
}

export interface EncoderDefinition extends grpc.ServiceDefinition {
  Encode: MethodDefinition<_mrl_v1_EncodeRequest, _mrl_v1_EncodeResponse, _mrl_v1_EncodeRequest__Output, _mrl_v1_EncodeResponse__Output>
}
