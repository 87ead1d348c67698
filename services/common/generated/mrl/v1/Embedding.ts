// Original file: protos/mrl/v1/classifier.proto


/**
 * A precomputed embedding: its length must be one of the bundle's nesting sizes,
 * and the cascade then runs no stage larger than that.
 */
export interface Embedding {
  'values'?: (number | string)[];
}

/**
 * A precomputed embedding: its length must be one of the bundle's nesting sizes,
 * and the cascade then runs no stage larger than that.
 */
export interface Embedding__Output {
  'values': (number)[];
}
