// Original file: protos/mrl/v1/encoder.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { EncodeBatchRequest as _mrl_v1_EncodeBatchRequest, EncodeBatchRequest__Output as _mrl_v1_EncodeBatchRequest__Output } from '../../mrl/v1/EncodeBatchRequest';
import type { EncodeBatchResponse as _mrl_v1_EncodeBatchResponse, EncodeBatchResponse__Output as _mrl_v1_EncodeBatchResponse__Output } from '../../mrl/v1/EncodeBatchResponse';
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
  
  /**
   * Many inputs in one call, run in the encoder's batches; embeddings come back as packed float32.
   */
  EncodeBatch(argument: _mrl_v1_EncodeBatchRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_EncodeBatchResponse__Output>): grpc.ClientUnaryCall;
  EncodeBatch(argument: _mrl_v1_EncodeBatchRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mrl_v1_EncodeBatchResponse__Output>): grpc.ClientUnaryCall;
  EncodeBatch(argument: _mrl_v1_EncodeBatchRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_EncodeBatchResponse__Output>): grpc.ClientUnaryCall;
  EncodeBatch(argument: _mrl_v1_EncodeBatchRequest, callback: grpc.requestCallback<_mrl_v1_EncodeBatchResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Many inputs in one call, run in the encoder's batches; embeddings come back as packed float32.
   */
  encodeBatch(argument: _mrl_v1_EncodeBatchRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_EncodeBatchResponse__Output>): grpc.ClientUnaryCall;
  encodeBatch(argument: _mrl_v1_EncodeBatchRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mrl_v1_EncodeBatchResponse__Output>): grpc.ClientUnaryCall;
  encodeBatch(argument: _mrl_v1_EncodeBatchRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_EncodeBatchResponse__Output>): grpc.ClientUnaryCall;
  encodeBatch(argument: _mrl_v1_EncodeBatchRequest, callback: grpc.requestCallback<_mrl_v1_EncodeBatchResponse__Output>): grpc.ClientUnaryCall;
  
}

/**
 * Runs the model bundle's encoder and returns Matryoshka embeddings.
 */
export interface EncoderHandlers extends grpc.UntypedServiceImplementation {
  Encode: grpc.handleUnaryCall<_mrl_v1_EncodeRequest__Output, _mrl_v1_EncodeResponse>;
  
  /**
   * Many inputs in one call, run in the encoder's batches; embeddings come back as packed float32.
   */
  EncodeBatch: grpc.handleUnaryCall<_mrl_v1_EncodeBatchRequest__Output, _mrl_v1_EncodeBatchResponse>;
  
}

export interface EncoderDefinition extends grpc.ServiceDefinition {
  Encode: MethodDefinition<_mrl_v1_EncodeRequest, _mrl_v1_EncodeResponse, _mrl_v1_EncodeRequest__Output, _mrl_v1_EncodeResponse__Output>
  EncodeBatch: MethodDefinition<_mrl_v1_EncodeBatchRequest, _mrl_v1_EncodeBatchResponse, _mrl_v1_EncodeBatchRequest__Output, _mrl_v1_EncodeBatchResponse__Output>
}
