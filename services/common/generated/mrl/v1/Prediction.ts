// Original file: protos/mrl/v1/classifier.proto


export interface Prediction {
  'label'?: (string);
  'class_index'?: (number);
  'probability'?: (number | string);
}

export interface Prediction__Output {
  'label': (string);
  'class_index': (number);
  'probability': (number);
}
