// Original file: protos/mrl/v1/classifier.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ClassifyBatchRequest as _mrl_v1_ClassifyBatchRequest, ClassifyBatchRequest__Output as _mrl_v1_ClassifyBatchRequest__Output } from '../../mrl/v1/ClassifyBatchRequest';
import type { ClassifyBatchResponse as _mrl_v1_ClassifyBatchResponse, ClassifyBatchResponse__Output as _mrl_v1_ClassifyBatchResponse__Output } from '../../mrl/v1/ClassifyBatchResponse';
import type { ClassifyRequest as _mrl_v1_ClassifyRequest, ClassifyRequest__Output as _mrl_v1_ClassifyRequest__Output } from '../../mrl/v1/ClassifyRequest';
import type { ClassifyResponse as _mrl_v1_ClassifyResponse, ClassifyResponse__Output as _mrl_v1_ClassifyResponse__Output } from '../../mrl/v1/ClassifyResponse';

/**
 * Adaptive classification over Matryoshka embeddings: the smallest confident prefix answers.
 */
export interface ClassifierClient extends grpc.Client {
  Classify(argument: _mrl_v1_ClassifyRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_ClassifyResponse__Output>): grpc.ClientUnaryCall;
  Classify(argument: _mrl_v1_ClassifyRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mrl_v1_ClassifyResponse__Output>): grpc.ClientUnaryCall;
  Classify(argument: _mrl_v1_ClassifyRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_ClassifyResponse__Output>): grpc.ClientUnaryCall;
  Classify(argument: _mrl_v1_ClassifyRequest, callback: grpc.requestCallback<_mrl_v1_ClassifyResponse__Output>): grpc.ClientUnaryCall;
  classify(argument: _mrl_v1_ClassifyRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_ClassifyResponse__Output>): grpc.ClientUnaryCall;
  classify(argument: _mrl_v1_ClassifyRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mrl_v1_ClassifyResponse__Output>): grpc.ClientUnaryCall;
  classify(argument: _mrl_v1_ClassifyRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_ClassifyResponse__Output>): grpc.ClientUnaryCall;
  classify(argument: _mrl_v1_ClassifyRequest, callback: grpc.requestCallback<_mrl_v1_ClassifyResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The bulk path: many requests in one call, embedded in shared encoder batches.
   */
  ClassifyBatch(argument: _mrl_v1_ClassifyBatchRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_ClassifyBatchResponse__Output>): grpc.ClientUnaryCall;
  ClassifyBatch(argument: _mrl_v1_ClassifyBatchRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mrl_v1_ClassifyBatchResponse__Output>): grpc.ClientUnaryCall;
  ClassifyBatch(argument: _mrl_v1_ClassifyBatchRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_ClassifyBatchResponse__Output>): grpc.ClientUnaryCall;
  ClassifyBatch(argument: _mrl_v1_ClassifyBatchRequest, callback: grpc.requestCallback<_mrl_v1_ClassifyBatchResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The bulk path: many requests in one call, embedded in shared encoder batches.
   */
  classifyBatch(argument: _mrl_v1_ClassifyBatchRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_ClassifyBatchResponse__Output>): grpc.ClientUnaryCall;
  classifyBatch(argument: _mrl_v1_ClassifyBatchRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mrl_v1_ClassifyBatchResponse__Output>): grpc.ClientUnaryCall;
  classifyBatch(argument: _mrl_v1_ClassifyBatchRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mrl_v1_ClassifyBatchResponse__Output>): grpc.ClientUnaryCall;
  classifyBatch(argument: _mrl_v1_ClassifyBatchRequest, callback: grpc.requestCallback<_mrl_v1_ClassifyBatchResponse__Output>): grpc.ClientUnaryCall;
  
}

/**
 * Adaptive classification over Matryoshka embeddings: the smallest confident prefix answers.
 */
export interface ClassifierHandlers extends grpc.UntypedServiceImplementation {
  Classify: grpc.handleUnaryCall<_mrl_v1_ClassifyRequest__Output, _mrl_v1_ClassifyResponse>;
  
  /**
   * The bulk path: many requests in one call, embedded in shared encoder batches.
   */
  ClassifyBatch: grpc.handleUnaryCall<_mrl_v1_ClassifyBatchRequest__Output, _mrl_v1_ClassifyBatchResponse>;
  
}

export interface ClassifierDefinition extends grpc.ServiceDefinition {
  Classify: MethodDefinition<_mrl_v1_ClassifyRequest, _mrl_v1_ClassifyResponse, _mrl_v1_ClassifyRequest__Output, _mrl_v1_ClassifyResponse__Output>
  ClassifyBatch: MethodDefinition<_mrl_v1_ClassifyBatchRequest, _mrl_v1_ClassifyBatchResponse, _mrl_v1_ClassifyBatchRequest__Output, _mrl_v1_ClassifyBatchResponse__Output>
}
