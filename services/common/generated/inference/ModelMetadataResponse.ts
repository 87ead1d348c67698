// Original file: protos/inference/grpc_service.proto

import type { Long } from '@grpc/proto-loader';

export interface _inference_ModelMetadataResponse_TensorMetadata {
  'name'?: (string);
  /**
   * FP32, INT64, BYTES, ...
   */
  'datatype'?: (string);
  /**
   * -1 marks a dimension of any size (the batch dimension, for a batching model).
   */
  'shape'?: (number | string | Long)[];
}

export interface _inference_ModelMetadataResponse_TensorMetadata__Output {
  'name': (string);
  /**
   * FP32, INT64, BYTES, ...
   */
  'datatype': (string);
  /**
   * -1 marks a dimension of any size (the batch dimension, for a batching model).
   */
  'shape': (string)[];
}

export interface ModelMetadataResponse {
  'name'?: (string);
  'versions'?: (string)[];
  /**
   * <framework>_<format>, e.g. onnxruntime_onnx.
   */
  'platform'?: (string);
  'inputs'?: (_inference_ModelMetadataResponse_TensorMetadata)[];
  'outputs'?: (_inference_ModelMetadataResponse_TensorMetadata)[];
}

export interface ModelMetadataResponse__Output {
  'name': (string);
  'versions': (string)[];
  /**
   * <framework>_<format>, e.g. onnxruntime_onnx.
   */
  'platform': (string);
  'inputs': (_inference_ModelMetadataResponse_TensorMetadata__Output)[];
  'outputs': (_inference_ModelMetadataResponse_TensorMetadata__Output)[];
}
