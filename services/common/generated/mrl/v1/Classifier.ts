// Original file: protos/mrl/v1/classifier.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
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
  
}

/**
 * Adaptive classification over Matryoshka embeddings: the smallest confident prefix answers.
 */
export interface ClassifierHandlers extends grpc.UntypedServiceImplementation {
  Classify: grpc.handleUnaryCall<_mrl_v1_ClassifyRequest__Output, _mrl_v1_ClassifyResponse>;
  
}

export interface ClassifierDefinition extends grpc.ServiceDefinition {
  Classify: MethodDefinition<_mrl_v1_ClassifyRequest, _mrl_v1_ClassifyResponse, _mrl_v1_ClassifyRequest__Output, _mrl_v1_ClassifyResponse__Output>
}
