import { existsSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type Bundle, BundleError } from '../matryoshka/bundle.js';
import { type ModelTensor, modelTensors } from '../matryoshka/modelTensors.js';

/** How Triton batches and queues the model. */
export interface TritonOptions {
  /**
   * `max_batch_size`: the largest batch Triton's dynamic batcher forms, and the most images one
   * request may carry (Triton refuses larger ones): at least the cascade's MRL_ENCODER_BATCH.
   * Default 256, the gpu overlay's MRL_MAX_BATCH.
   */
  maxBatch: number;
  /** `max_queue_size`: requests (not images) waiting for a batch before Triton refuses more. Default 64. */
  maxQueue: number;
  /** `max_queue_delay_microseconds`: longest a request waits for others to join its batch, µs. Default 0, as the encoder's MRL_MAX_BATCH_DELAY_MS. */
  maxDelayUs: number;
}

export const TRITON_DEFAULTS: TritonOptions = { maxBatch: 256, maxQueue: 64, maxDelayUs: 0 };

/** Triton's model version of the exported model: the folder `<name>/1`. */
export const TRITON_VERSION = 1;

const tensor = (t: ModelTensor) => `  {
    name: ${JSON.stringify(t.name)}
    data_type: TYPE_FP32
    dims: [ ${t.dims.join(', ')} ]
  }`;

/**
 * The bundle's encoder as a Triton model configuration (config.pbtxt, protobuf text format):
 * onnxruntime on one GPU, dynamic batching with a bounded queue, dims without the batch dimension.
 */
export function tritonConfig(bundle: Bundle, options: TritonOptions = TRITON_DEFAULTS): string {
  const { input, output } = modelTensors(bundle);
  return `# ${bundle.id} for NVIDIA Triton, written by \`mrl export-triton\`.
name: ${JSON.stringify(bundle.name)}
platform: "onnxruntime_onnx"
max_batch_size: ${options.maxBatch}
version_policy: { specific: { versions: [ ${TRITON_VERSION} ] } }
input [
${tensor(input)}
]
output [
${tensor(output)}
]
dynamic_batching {
  max_queue_delay_microseconds: ${options.maxDelayUs}
  # Bounded: a request that finds the queue full is refused at once (UNAVAILABLE "Exceeds maximum queue size").
  default_queue_policy {
    max_queue_size: ${options.maxQueue}
  }
}
instance_group [
  {
    kind: KIND_GPU
    count: 1
  }
]
`;
}

/** Writes a Triton model repository for the bundle into `dir`: `<name>/config.pbtxt` and `<name>/1/model.onnx`. Returns the model's folder. */
export async function exportTriton(bundle: Bundle, dir: string, options: TritonOptions = TRITON_DEFAULTS): Promise<string> {
  if (!existsSync(bundle.encoderPath)) throw new BundleError(bundle.dir, 'has no encoder.onnx (an embeddings-only bundle): there is no model for Triton to serve');
  const modelDir = join(resolve(dir), bundle.name);
  await mkdir(join(modelDir, String(TRITON_VERSION)), { recursive: true });
  await copyFile(bundle.encoderPath, join(modelDir, String(TRITON_VERSION), 'model.onnx'));
  await writeFile(join(modelDir, 'config.pbtxt'), tritonConfig(bundle, options));
  return modelDir;
}

/** `mrl export-triton DIR`: writes the repository and says where. */
export async function exportTritonCommand(bundle: Bundle, dir: string, options: TritonOptions, json: boolean): Promise<number> {
  const modelDir = await exportTriton(bundle, dir, options);
  const repository = resolve(dir);
  console.log(
    json
      ? JSON.stringify({ repository, model: bundle.name, version: TRITON_VERSION, ...options })
      : `wrote ${modelDir}/config.pbtxt and ${modelDir}/${TRITON_VERSION}/model.onnx (${bundle.id})\n` +
          `serve it: tritonserver --model-repository=${repository}   (gRPC on :8001, model "${bundle.name}")`,
  );
  return 0;
}
