// Original file: protos/mrl/v1/classifier.proto

import type { Prediction as _mrl_v1_Prediction, Prediction__Output as _mrl_v1_Prediction__Output } from '../../mrl/v1/Prediction';
import type { Stage as _mrl_v1_Stage, Stage__Output as _mrl_v1_Stage__Output } from '../../mrl/v1/Stage';

export interface ClassifyResponse {
  'label'?: (string);
  'class_index'?: (number);
  /**
   * Top probability of the stage that answered.
   */
  'confidence'?: (number | string);
  /**
   * The prefix size that answered.
   */
  'dimension_used'?: (number);
  /**
   * The answering stage's `top_k` most probable classes, most probable first.
   */
  'top'?: (_mrl_v1_Prediction)[];
  'trace'?: (_mrl_v1_Stage)[];
  /**
   * name@version of the bundle.
   */
  'model'?: (string);
}

export interface ClassifyResponse__Output {
  'label': (string);
  'class_index': (number);
  /**
   * Top probability of the stage that answered.
   */
  'confidence': (number);
  /**
   * The prefix size that answered.
   */
  'dimension_used': (number);
  /**
   * The answering stage's `top_k` most probable classes, most probable first.
   */
  'top': (_mrl_v1_Prediction__Output)[];
  'trace': (_mrl_v1_Stage__Output)[];
  /**
   * name@version of the bundle.
   */
  'model': (string);
}
