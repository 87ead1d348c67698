import { status } from '@grpc/grpc-js';
import type { BundleEncoder, BundleInfo } from '../../matryoshka/bundle.js';
import { modelTensors } from '../../matryoshka/modelTensors.js';
import type { ModelInferResponse__Output } from '../common/generated/inference/ModelInferResponse.js';
import type { ModelMetadataResponse__Output } from '../common/generated/inference/ModelMetadataResponse.js';
import type { ModelReadyResponse__Output } from '../common/generated/inference/ModelReadyResponse.js';
import { loadInferenceProtos } from '../common/protos.js';
import { fmtShape, imageSize } from '../common/tensorChecks.js';
import { imageToInput, tensorToInput } from '../../matryoshka/modelInput.js';
import type { Rows } from './encoderGateway.js';
import { EncoderFailure, encoderFailure, unavailable } from './encoderOutcome.js';
import { type ChannelOptions, type EncoderTransport, channelSettings, unaryCall } from './encoderTransport.js';

export interface KserveModel {
  /** The model's name on the server (default: the bundle's). */
  name: string;
  /** Its version; empty: the server's choice. */
  version: string;
  /** Images with more pixels are refused before they are decoded. */
  maxImagePixels: number;
}

const FP32 = 'FP32';
/** How long a metadata or readiness check may take, ms. */
const CHECK_TIMEOUT_MS = 2000;

/**
 * Triton answers a full queue with UNAVAILABLE "Exceeds maximum queue size": that is
 * backpressure, not the encoder failing.
 */
function kserveFailure(err: { code: status; details: string }, call: { sentAt: number; deadline: number }): EncoderFailure {
  if (err.code === status.UNAVAILABLE && /exceeds maximum queue size/i.test(err.details))
    return new EncoderFailure(status.RESOURCE_EXHAUSTED, `encoder is overloaded: ${err.details}; retry later`, 'backpressure');
  return encoderFailure(err, call);
}

const dims = (shape: (string | number)[]) => shape.map(Number);
const sameDims = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Any Open Inference Protocol (KServe V2) server as the encoder: Triton, KServe, or our own. The
 * cascade makes the model's input itself, with the bundle's preprocessing, and sends FP32
 * tensors [N, ...] in `raw_input_contents`; rows come back full size, in `raw_output_contents` or
 * in `contents`. The server's ModelMetadata must agree with the bundle before the cascade serves.
 */
export function kserveTransport(options: ChannelOptions, bundle: BundleInfo & BundleEncoder, model: KserveModel): EncoderTransport {
  const { GRPCInferenceService } = loadInferenceProtos().proto.inference;
  const client = new GRPCInferenceService(options.target, options.credentials, channelSettings(options));
  const { input, output } = modelTensors(bundle);
  const size = imageSize(bundle.input);
  const d = bundle.embeddingDim;
  const ref = { name: model.name, version: model.version };
  const what = `${model.name}${model.version ? ` version ${model.version}` : ''} at ${options.target}`;
  const call = <T>(start: Parameters<typeof unaryCall<T>>[0], deadline: number, cancel: AbortSignal) =>
    unaryCall(start, deadline, cancel, kserveFailure);

  /** Why the server's metadata does not fit the bundle, if it does not. */
  const mismatch = (meta: ModelMetadataResponse__Output): string | undefined => {
    if (meta.name !== model.name) return `it names the model ${meta.name}`;
    const one = (kind: 'input' | 'output', list: ModelMetadataResponse__Output['inputs'], want: { name: string; dims: number[] }) => {
      const t = list.find((x) => x.name === want.name);
      if (!t) return `it has no ${kind} "${want.name}" (it has ${list.map((x) => `"${x.name}"`).join(', ') || 'none'})`;
      if (t.datatype !== FP32) return `its ${kind} "${want.name}" is ${t.datatype}, not ${FP32}`;
      const [, ...rest] = dims(t.shape);
      if (!sameDims(rest, want.dims)) return `its ${kind} "${want.name}" has shape ${fmtShape(dims(t.shape))}, and the bundle's is [-1, ${want.dims.join(', ')}]`;
      return undefined;
    };
    return one('input', meta.inputs, input) ?? one('output', meta.outputs, output);
  };

  return {
    prepare: async (job) => {
      // Packed images are the model input's values already (service.ts checked them).
      if (job.images) return { ...job, values: job.images };
      const { image, tensor } = job.input!;
      const values = image ? await imageToInput(Buffer.from(image as Uint8Array), bundle.preprocess, model.maxImagePixels) : tensorToInput(tensor as never, bundle.input);
      return { ...job, values };
    },
    call: async (jobs, count, _dimension, deadline, cancel) => {
      const raw = Buffer.alloc(count * size * 4);
      let at = 0;
      for (const j of jobs) {
        raw.set(new Uint8Array(j.values!.buffer, j.values!.byteOffset, j.values!.byteLength), at);
        at += j.values!.byteLength;
      }
      const request = {
        model_name: model.name,
        model_version: model.version,
        inputs: [{ name: input.name, datatype: FP32, shape: [count, ...input.dims] }],
        outputs: [{ name: output.name }],
        raw_input_contents: [raw],
      };
      const res = await call<ModelInferResponse__Output>((done) => client.ModelInfer(request, { deadline }, done), deadline, cancel);
      const at_ = res.outputs.findIndex((o) => o.name === output.name);
      if (at_ < 0) throw unavailable(`it answered no output "${output.name}"`);
      const out = res.outputs[at_]!;
      if (out.datatype !== FP32 || !sameDims(dims(out.shape), [count, d]))
        throw unavailable(`it answered ${out.datatype} ${fmtShape(dims(out.shape))} for ${count} inputs; the cascade's heads take ${FP32} [${count}, ${d}]`);
      let rows: Float32Array;
      const bytes = res.raw_output_contents[at_];
      if (bytes && bytes.length > 0) {
        if (bytes.length !== count * d * 4) throw unavailable(`it answered ${bytes.length} bytes for ${count} rows of ${d} floats`);
        // Copy into an aligned buffer: the received bytes may start at any offset.
        rows = new Float32Array(new Uint8Array(bytes).buffer);
      } else {
        const fp32 = out.contents?.fp32_contents ?? [];
        if (fp32.length !== count * d) throw unavailable(`it answered ${fp32.length} values for ${count} rows of ${d}`);
        rows = Float32Array.from(fp32);
      }
      return Array.from({ length: count }, (_, i) => rows.subarray(i * d, (i + 1) * d)) as Rows;
    },
    unfit: async () => {
      const cancel = new AbortController().signal;
      // The server's own words, unclassified: they go into the reason.
      const check = <T>(start: Parameters<typeof unaryCall<T>>[0]) =>
        unaryCall(start, Date.now() + CHECK_TIMEOUT_MS, cancel, (err) => new EncoderFailure(err.code, err.details || status[err.code]!, 'encoder'));
      try {
        const meta = await check<ModelMetadataResponse__Output>((done) => client.ModelMetadata(ref, { deadline: Date.now() + CHECK_TIMEOUT_MS }, done));
        const why = mismatch(meta);
        if (why) return `the encoder ${what} does not fit this cascade's bundle ${bundle.id}: ${why}`;
        const ready = await check<ModelReadyResponse__Output>((done) => client.ModelReady(ref, { deadline: Date.now() + CHECK_TIMEOUT_MS }, done));
        return ready.ready ? undefined : `the encoder's model ${what} is not ready`;
      } catch (err) {
        return `the encoder ${what} did not answer ModelMetadata or ModelReady: ${(err as Error).message}`;
      }
    },
    close: () => client.close(),
  };
}
