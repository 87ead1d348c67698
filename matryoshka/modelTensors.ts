import type { Bundle } from './bundle.js';

/** One float32 tensor of the encoder's ONNX model: its name and its dimensions after the batch dimension. */
export interface ModelTensor {
  name: string;
  dims: number[];
}

/**
 * The encoder model's one input and one output as serving protocols describe them (Open Inference
 * Protocol metadata, Triton's config.pbtxt), batch dimension left out: the input is what the
 * inference worker feeds, [N, ...InputSpec.dims] in the model's layout; the output is [N, embedding_dim].
 */
export function modelTensors(bundle: Pick<Bundle, 'input' | 'outputName' | 'embeddingDim'>): { input: ModelTensor; output: ModelTensor } {
  const { name, dims } = bundle.input;
  return { input: { name, dims }, output: { name: bundle.outputName, dims: [bundle.embeddingDim] } };
}
