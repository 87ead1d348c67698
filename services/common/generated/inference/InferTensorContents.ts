// Original file: protos/inference/grpc_service.proto

import type { Long } from '@grpc/proto-loader';

/**
 * A tensor's elements, flattened in row-major order, in the field of its datatype. Not a oneof:
 * a oneof cannot hold repeated fields. FP16 and BF16 have no field here and travel as raw bytes.
 */
export interface InferTensorContents {
  'bool_contents'?: (boolean)[];
  /**
   * INT8, INT16, INT32.
   */
  'int_contents'?: (number)[];
  'int64_contents'?: (number | string | Long)[];
  /**
   * UINT8, UINT16, UINT32.
   */
  'uint_contents'?: (number)[];
  'uint64_contents'?: (number | string | Long)[];
  'fp32_contents'?: (number | string)[];
  'fp64_contents'?: (number | string)[];
  'bytes_contents'?: (Buffer | Uint8Array | string)[];
}

/**
 * A tensor's elements, flattened in row-major order, in the field of its datatype. Not a oneof:
 * a oneof cannot hold repeated fields. FP16 and BF16 have no field here and travel as raw bytes.
 */
export interface InferTensorContents__Output {
  'bool_contents': (boolean)[];
  /**
   * INT8, INT16, INT32.
   */
  'int_contents': (number)[];
  'int64_contents': (string)[];
  /**
   * UINT8, UINT16, UINT32.
   */
  'uint_contents': (number)[];
  'uint64_contents': (string)[];
  'fp32_contents': (number)[];
  'fp64_contents': (number)[];
  'bytes_contents': (Buffer)[];
}
