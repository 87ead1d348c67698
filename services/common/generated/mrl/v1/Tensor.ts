// Original file: protos/mrl/v1/tensor.proto


/**
 * A float32 tensor. Give the values in exactly one of `values` or `raw`.
 */
export interface Tensor {
  /**
   * Dimensions, outermost first. For an image: [28, 28], [1, 28, 28] or [1, 1, 28, 28].
   */
  'shape'?: (number)[];
  /**
   * The values in row-major order.
   */
  'values'?: (number | string)[];
  /**
   * The values as little-endian float32 bytes, row-major: cheaper to encode than `values`.
   */
  'raw'?: (Buffer | Uint8Array | string);
}

/**
 * A float32 tensor. Give the values in exactly one of `values` or `raw`.
 */
export interface Tensor__Output {
  /**
   * Dimensions, outermost first. For an image: [28, 28], [1, 28, 28] or [1, 1, 28, 28].
   */
  'shape': (number)[];
  /**
   * The values in row-major order.
   */
  'values': (number)[];
  /**
   * The values as little-endian float32 bytes, row-major: cheaper to encode than `values`.
   */
  'raw': (Buffer);
}
