import { status } from '@grpc/grpc-js';
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { modelTensors } from '../../matryoshka/modelTensors.js';
import type { GRPCInferenceServiceHandlers } from '../common/generated/inference/GRPCInferenceService.js';
import type { InferTensorContents__Output } from '../common/generated/inference/InferTensorContents.js';
import type { ModelInferRequest__Output } from '../common/generated/inference/ModelInferRequest.js';
import type { ModelInferResponse } from '../common/generated/inference/ModelInferResponse.js';
import type { ModelMetadataResponse } from '../common/generated/inference/ModelMetadataResponse.js';
import { PACKAGE_ROOT } from '../common/runtime.js';
import { StatusError, invalidArgument } from '../common/statusError.js';
import { fmtShape, imageSize, nonFiniteError, tensorValues } from '../common/tensorChecks.js';
import { baseErrorMapper, codeName, unary } from '../common/unary.js';
import { type EncoderServiceDeps, embedInput } from './service.js';

export interface InferenceServiceDeps extends Pick<EncoderServiceDeps, 'bundle' | 'batcher' | 'metrics' | 'logger'> {
  /** Most images one ModelInfer call may carry (the encoder passes its queue bound, as for EncodeBatch). */
  maxBatchInputs: number;
  /** Whether the encoder serves (its health status): what ServerLive, ServerReady and ModelReady answer. */
  serving: () => boolean;
}

/** The datatype of the model's input and output. */
const FP32 = 'FP32';

/** The typed-contents fields other than fp32_contents, which an FP32 tensor must leave empty. */
const OTHER_CONTENTS = ['bool_contents', 'int_contents', 'int64_contents', 'uint_contents', 'uint64_contents', 'fp64_contents', 'bytes_contents'] as const;

/**
 * inference.GRPCInferenceService (the Open Inference Protocol, KServe V2) for the bundle's encoder:
 * model name the bundle's `name`, version its `version`. ModelInfer takes one FP32 input of shape
 * [N, ...] as raw little-endian bytes or `fp32_contents` and answers [N, d] in
 * `raw_output_contents`, as Triton does. Its images take the same path as mrl.v1's: the shared
 * batch queue (its limits, its metrics), the same session and the same embedding checks.
 */
export function createInferenceService(deps: InferenceServiceDeps): GRPCInferenceServiceHandlers {
  const { bundle, metrics, maxBatchInputs } = deps;
  const { input, output } = modelTensors(bundle);
  const perImage = imageSize(bundle.input);
  const inputShape = `[N, ${input.dims.join(', ')}]`;
  const mapError = baseErrorMapper(deps.logger);
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };

  const checkModel = (name: string, version: string) => {
    if (name !== bundle.name) throw new StatusError(status.NOT_FOUND, `unknown model "${name}"; this server serves "${bundle.name}"`);
    if (version !== '' && version !== bundle.version)
      throw new StatusError(status.NOT_FOUND, `model "${name}" has no version "${version}"; it serves version "${bundle.version}"`);
  };

  const metadata: ModelMetadataResponse = {
    name: bundle.name,
    versions: [bundle.version],
    platform: 'onnxruntime_onnx',
    inputs: [{ name: input.name, datatype: FP32, shape: [-1, ...input.dims] }],
    outputs: [{ name: output.name, datatype: FP32, shape: [-1, ...output.dims] }],
  };

  /** The request's one input, checked against the model's, as N images' values. */
  const inputValues = (req: ModelInferRequest__Output): { n: number; values: Float32Array } => {
    if (req.inputs.length !== 1) throw invalidArgument(`ModelInfer takes exactly one input, "${input.name}"; the request has ${req.inputs.length}`);
    const tensor = req.inputs[0]!;
    const what = `input "${tensor.name}"`;
    if (tensor.name !== input.name) throw invalidArgument(`unknown ${what}; the model's one input is "${input.name}"`);
    if (tensor.datatype !== FP32) throw invalidArgument(`${what} has datatype "${tensor.datatype}"; the model takes ${FP32}`);
    const shape = tensor.shape.map(Number);
    const [n = 0, ...rest] = shape;
    if (rest.length !== input.dims.length || rest.some((d, i) => d !== input.dims[i]))
      throw invalidArgument(`${what} has shape ${fmtShape(shape)}; the model takes ${inputShape}`);
    if (!(n >= 1 && n <= maxBatchInputs)) throw invalidArgument(`${what} holds ${n} images; send 1 to ${maxBatchInputs}`);
    const count = n * perImage;
    const fp32 = typedValues(tensor.contents, what);
    const raw = req.raw_input_contents;
    if (raw.length > 0 && fp32.length > 0) throw invalidArgument(`set raw_input_contents or ${what}'s contents.fp32_contents, not both`);
    if (raw.length > 1) throw invalidArgument(`raw_input_contents has ${raw.length} entries; the request has one input`);
    if (raw.length === 0 && fp32.length === 0) throw invalidArgument(`${what} has no values: set raw_input_contents or its contents.fp32_contents`);
    if (raw.length === 1 && raw[0]!.length !== count * 4)
      throw invalidArgument(`raw_input_contents[0] has ${raw[0]!.length} bytes; ${what} of shape ${fmtShape(shape)} needs ${count * 4} (FP32, little-endian)`);
    if (raw.length === 0 && fp32.length !== count)
      throw invalidArgument(`${what} has ${fp32.length} values in contents.fp32_contents; shape ${fmtShape(shape)} needs ${count}`);
    // Checked above in this protocol's terms; tensorValues makes the aligned float32 copy.
    const values = tensorValues({ shape, values: fp32, raw: raw[0] ?? Buffer.alloc(0) }, count, what);
    const bad = nonFiniteError(values, what);
    if (bad) throw bad;
    return { n, values };
  };

  const infer = async (req: ModelInferRequest__Output, signal: AbortSignal): Promise<ModelInferResponse> => {
    checkModel(req.model_name, req.model_version);
    const { n, values } = inputValues(req);
    for (const { name } of req.outputs)
      if (name !== output.name) throw invalidArgument(`unknown output "${name}"; the model's one output is "${output.name}"`);
    // Each image joins the shared queue on its own, as EncodeBatch's do. There are no per-image
    // errors in this protocol: the first failure fails the call and takes its other images off the queue.
    const failed = new AbortController();
    const either = AbortSignal.any([signal, failed.signal]);
    // Each image of the call waits on it: many listeners are by design.
    setMaxListeners(0, either);
    let embeddings: Float32Array[];
    try {
      embeddings = await Promise.all(Array.from({ length: n }, (_, i) => embedInput(deps, values.subarray(i * perImage, (i + 1) * perImage), either)));
    } catch (err) {
      failed.abort(err);
      throw err;
    }
    const d = bundle.embeddingDim;
    const rows = new Float32Array(n * d);
    embeddings.forEach((e, i) => rows.set(e, i * d));
    return {
      model_name: bundle.name,
      model_version: bundle.version,
      id: req.id,
      outputs: [{ name: output.name, datatype: FP32, shape: [n, d] }],
      raw_output_contents: [Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength)],
    };
  };

  // Health and metadata calls are not encodings: only ModelInfer counts in the encoder's metrics.
  const uncounted = () => {};
  return {
    ServerLive: unary(async () => ({ live: deps.serving() }), mapError, uncounted),
    ServerReady: unary(async () => ({ ready: deps.serving() }), mapError, uncounted),
    ModelReady: unary(
      async (req) => {
        checkModel(req.name, req.version);
        return { ready: deps.serving() };
      },
      mapError,
      uncounted,
    ),
    ServerMetadata: unary(async () => ({ name: 'mrl-encoder', version: pkg.version, extensions: [] }), mapError, uncounted),
    ModelMetadata: unary(
      async (req) => {
        checkModel(req.name, req.version);
        return metadata;
      },
      mapError,
      uncounted,
    ),
    // Each image counts in mrl_encoder_requests_total with the call's code, as an EncodeBatch input
    // does (one, when the call's image count is out of bounds or it did not parse).
    ModelInfer: unary(infer, mapError, (code, seconds, req) => {
      const n = Number(req?.inputs[0]?.shape[0]);
      metrics.requests.inc({ code: codeName(code) }, Number.isInteger(n) && n >= 1 && n <= maxBatchInputs ? n : 1);
      metrics.requestSeconds.observe(seconds);
    }),
  };
}

/** An FP32 tensor's typed values (`fp32_contents`); values in another type's field are refused. */
function typedValues(contents: InferTensorContents__Output | null, what: string): number[] {
  if (!contents) return [];
  const other = OTHER_CONTENTS.find((field) => contents[field].length > 0);
  if (other) throw invalidArgument(`${what} is ${FP32}: its values go in contents.fp32_contents, not contents.${other}`);
  return contents.fp32_contents;
}
