// Original file: protos/mrl/v1/classifier.proto


/**
 * One stage the cascade ran.
 */
export interface Stage {
  'dimension'?: (number);
  'top_probability'?: (number | string);
  /**
   * The stage's threshold; 0 for the last stage, which always answers.
   */
  'threshold'?: (number | string);
  'escalated'?: (boolean);
  /**
   * The class this stage ranked first.
   */
  'class_index'?: (number);
}

/**
 * One stage the cascade ran.
 */
export interface Stage__Output {
  'dimension': (number);
  'top_probability': (number);
  /**
   * The stage's threshold; 0 for the last stage, which always answers.
   */
  'threshold': (number);
  'escalated': (boolean);
  /**
   * The class this stage ranked first.
   */
  'class_index': (number);
}
