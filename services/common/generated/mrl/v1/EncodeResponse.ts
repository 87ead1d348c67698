// Original file: protos/mrl/v1/encoder.proto


export interface EncodeResponse {
  'embedding'?: (number | string)[];
  /**
   * The bundle's full embedding size.
   */
  'full_dimension'?: (number);
  /**
   * name@version of the bundle.
   */
  'model'?: (string);
}

export interface EncodeResponse__Output {
  'embedding': (number)[];
  /**
   * The bundle's full embedding size.
   */
  'full_dimension': (number);
  /**
   * name@version of the bundle.
   */
  'model': (string);
}
