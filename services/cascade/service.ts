import { status, type ServerUnaryCall } from '@grpc/grpc-js';
import type { ClassifierBundle } from '../../matryoshka/bundle.js';
import type { ClassifierHandlers } from '../common/generated/mrl/v1/Classifier.js';
import type { ClassifyBatchRequest__Output } from '../common/generated/mrl/v1/ClassifyBatchRequest.js';
import type { ClassifyBatchResponse } from '../common/generated/mrl/v1/ClassifyBatchResponse.js';
import type { ClassifyBatchResult } from '../common/generated/mrl/v1/ClassifyBatchResult.js';
import type { ClassifyRequest__Output } from '../common/generated/mrl/v1/ClassifyRequest.js';
import type { ClassifyResponse } from '../common/generated/mrl/v1/ClassifyResponse.js';
import type { Logger } from '../common/logger.js';
import type { EncodeInput } from '../common/generated/mrl/v1/EncodeInput.js';
import { invalidArgument } from '../common/statusError.js';
import { nonFiniteError, packedImages } from '../common/tensorChecks.js';
import { baseErrorMapper, codeName, unary } from '../common/unary.js';
import type { Cascade, Policy } from '../../matryoshka/cascade.js';
import { unavailable } from './encoderOutcome.js';
import type { EncoderThread } from './encoderThread.js';
import type { Lane } from './encoderWorker.js';
import type { HeadRunner } from './headRunner.js';
import type { CascadeMetrics } from './metrics.js';
import type { ShadowSampler } from './shadow.js';
import type { ThresholdStore } from './thresholds.js';

export interface ClassifierServiceDeps {
  bundle: ClassifierBundle;
  cascade: Cascade;
  /** Runs the heads: the requests of one turn as one batch per stage. */
  heads: HeadRunner;
  thresholds: ThresholdStore;
  /** Samples answers for shadow agreement. */
  shadow: ShadowSampler;
  /**
   * The way to the encoder for unary Classify calls, and a second one, with a queue of its own,
   * for ClassifyBatch items: a bulk job can fill only its own queue, never the interactive one.
   * Undefined for an embeddings-only bundle: image and tensor inputs are refused.
   */
  encoder: Pick<EncoderThread, 'interactive' | 'bulk'> | undefined;
  metrics: CascadeMetrics;
  logger: Logger;
  /** Deadline given to encoder calls when the caller set none, ms. */
  defaultTimeoutMs: number;
  /** Most requests one ClassifyBatch call may carry. */
  maxBatchRequests: number;
}

/**
 * Of the caller's remaining time, the part (at most 50 ms, at most a tenth) kept back from the
 * encoder call: behind a slow encoder the caller gets the cascade's own DEADLINE_EXCEEDED, which
 * says what was slow, before its own timer fires, and the cascade counts what the caller saw.
 */
const DEADLINE_RESERVE = { maxMs: 50, fraction: 0.1 };

/** When the encoder call must end: the caller's deadline less the reserve, or the default timeout. */
function encoderDeadline(callerDeadline: Date | number, defaultTimeoutMs: number): Date {
  const now = Date.now();
  const end = callerDeadline.valueOf();
  if (end === Infinity) return new Date(now + defaultTimeoutMs);
  return new Date(end - Math.max(0, Math.min(DEADLINE_RESERVE.maxMs, (end - now) * DEADLINE_RESERVE.fraction)));
}

const POLICIES: Record<string, Policy> = { POLICY_UNSPECIFIED: 'cascade', POLICY_CASCADE: 'cascade', POLICY_FULL: 'full' };

/** A request's options: a ClassifyRequest's, or a packed ClassifyBatch's for all its images. */
type Options = Pick<ClassifyRequest__Output, 'max_dimension' | 'policy' | 'top_k'>;

function policyOf(req: Options): Policy {
  const policy = POLICIES[String(req.policy)];
  if (!policy) throw invalidArgument(`policy ${String(req.policy)} is not a known value (POLICY_CASCADE or POLICY_FULL)`);
  return policy;
}

/** The precomputed embedding, validated: a length the cascade takes, finite values (the heads refuse values too large for them). */
function embeddingOf(values: number[], cascade: Cascade): Float32Array {
  const badLength = cascade.embeddingError(values.length);
  if (badLength) throw invalidArgument(badLength);
  const z = Float32Array.from(values);
  const bad = nonFiniteError(z, 'embedding');
  if (bad) throw bad;
  return z;
}

/** A request's options, validated. */
interface Checked {
  policy: Policy;
  /** The largest prefix the request may use. */
  cap: number;
  topK: number;
  /** Whether the caller gave the embedding (else the encoder made it). */
  given: boolean;
}

/** The mrl.v1.Classifier implementation. */
export function createClassifierService(deps: ClassifierServiceDeps): ClassifierHandlers {
  const { bundle, cascade, metrics } = deps;
  const mapError = baseErrorMapper(deps.logger);
  const lengths = cascade.embeddingLengths;
  const embeddingsOnly = () =>
    invalidArgument(
      `this bundle is embeddings-only: send \`embedding\` (${lengths.length === 1 ? `all ${lengths[0]} values` : `N values, N one of the nesting sizes ${lengths.join(', ')}`})`,
    );
  /** The encoder lanes, or the refusal of an embeddings-only bundle. */
  const encoderLanes = () => {
    if (!deps.encoder) throw embeddingsOnly();
    return deps.encoder;
  };

  const checkOptions = (o: Options): Checked => {
    const policy = policyOf(o);
    if (o.max_dimension !== 0 && !bundle.nesting.includes(o.max_dimension))
      throw invalidArgument(`max_dimension ${o.max_dimension} is not 0 or one of the nesting sizes ${bundle.nesting.join(', ')}`);
    const topK = o.top_k || 1;
    if (topK > bundle.labels.length) throw invalidArgument(`top_k ${topK} is more than the ${bundle.labels.length} classes`);
    return { policy, cap: o.max_dimension || bundle.embeddingDim, topK, given: false };
  };

  const check = (req: ClassifyRequest__Output): Checked => {
    const c = checkOptions(req);
    if (req.input !== 'image' && req.input !== 'tensor' && req.input !== 'embedding')
      throw invalidArgument('request has no input: set image, tensor or embedding');
    metrics.inputs.inc({ input: req.input });
    return { ...c, given: req.input === 'embedding' };
  };

  /** Runs the cascade on an embedding and records what it did. */
  const respond = async (z: Float32Array, c: Checked): Promise<ClassifyResponse> => {
    const settings = deps.thresholds.current;
    // The heads refuse what they cannot run with a RangeError. Its length, cap and topK were
    // checked above; what is left is values too large for their float32 logits: the caller's, or
    // the encoder's (which sees only finite values, and may have been given a tensor far outside
    // its model's range).
    const result = await deps.heads.classify(z, { ...settings, maxDimension: c.cap, policy: c.policy, topK: c.topK }).catch((err: unknown) => {
      if (!(err instanceof RangeError)) throw err;
      throw c.given
        ? invalidArgument(err.message)
        : unavailable(`its embedding is too large for this cascade's heads (${err.message}): a faulty model, or an input far outside the range the model takes`);
    });
    // Only an answer that could have escalated to the full size can disagree with it.
    if (c.policy === 'cascade' && c.cap === bundle.embeddingDim && z.length === bundle.embeddingDim) deps.shadow.offer(z, result, settings);
    metrics.dimensionUsed.observe(result.dimensionUsed);
    metrics.exits.inc({ dimension: String(result.dimensionUsed) });
    for (const stage of result.trace) if (stage.escalated) metrics.escalations.inc({ dimension: String(stage.dimension) });
    const top = result.top.map((t) => ({ label: bundle.labels[t.classIndex]!, class_index: t.classIndex, probability: t.probability }));
    return {
      label: bundle.labels[result.classIndex]!,
      class_index: result.classIndex,
      confidence: result.confidence,
      dimension_used: result.dimensionUsed,
      top,
      trace: result.trace.map((s) => ({
        dimension: s.dimension,
        top_probability: s.topProbability,
        threshold: s.threshold,
        escalated: s.escalated,
        class_index: s.classIndex,
      })),
      model: bundle.id,
    };
  };

  /**
   * The request's embedding, as long as it may use: given, or from the encoder (only the prefix
   * the request can use, less to send and copy, unless normalising reads the whole embedding).
   */
  const embed = (
    lane: Lane,
    req: ClassifyRequest__Output,
    c: Checked,
    deadline: Date,
    signal: AbortSignal,
  ): Promise<Float32Array> | Float32Array => {
    if (req.input === 'embedding') return embeddingOf(req.embedding!.values, cascade);
    const input: EncodeInput = req.input === 'image' ? { image: req.image } : { tensor: req.tensor };
    return encoderLanes()[lane].encode(input, cascade.neededLength(c.cap), deadline, signal);
  };
  const deadlineOf = (call: ServerUnaryCall<unknown, unknown>) => encoderDeadline(call.getDeadline(), deps.defaultTimeoutMs);

  const classify = async (req: ClassifyRequest__Output, signal: AbortSignal, call: ServerUnaryCall<ClassifyRequest__Output, ClassifyResponse>) => {
    const c = check(req);
    const z = await embed('interactive', req, c, deadlineOf(call), signal);
    signal.throwIfAborted();
    return respond(z, c);
  };

  /** A batch item's result, counted as a Classify request: `answer`'s response, or the error it threw. */
  const result = async (answer: () => Promise<ClassifyResponse> | ClassifyResponse): Promise<ClassifyBatchResult> => {
    try {
      const response = await answer();
      metrics.requests.inc({ code: 'OK' });
      return { response, code: status.OK };
    } catch (err) {
      const { code, details } = mapError(err);
      metrics.requests.inc({ code: codeName(code) });
      return { code, message: details };
    }
  };

  /**
   * The bulk path: every request is validated and answered on its own (its response or the
   * error it would have got alone); their encoder inputs share EncodeBatch calls. Packed images
   * go to the encoder packed, in runs (see EncoderLane.encodePacked).
   */
  const classifyBatch = async (
    req: ClassifyBatchRequest__Output,
    signal: AbortSignal,
    call: ServerUnaryCall<ClassifyBatchRequest__Output, ClassifyBatchResponse>,
  ): Promise<ClassifyBatchResponse> => {
    const limit = deps.maxBatchRequests;
    if (req.images) {
      if (req.requests.length > 0) throw invalidArgument('set requests or images, not both');
      const c = checkOptions(req);
      if (!bundle.input) throw embeddingsOnly();
      // Checked here as the encoder would, with the same words: the cascade splits the tensor
      // into calls, and the encoder would number a bad image within its call.
      const { count, values, refused } = packedImages(req.images, bundle.input, limit);
      metrics.inputs.inc({ input: 'tensor' }, count);
      const rows = await encoderLanes().bulk.encodePacked(values, count, cascade.neededLength(c.cap), deadlineOf(call), signal);
      const results = rows.map((z, i) =>
        result(() => {
          if (refused[i]) throw refused[i];
          if (!(z instanceof Float32Array)) throw z;
          return respond(z, c);
        }),
      );
      return { results: await Promise.all(results) };
    }
    const n = req.requests.length;
    if (n === 0) throw invalidArgument('requests is empty');
    if (n > limit) throw invalidArgument(`${n} requests is more than the ${limit} one ClassifyBatch call may carry`);
    const deadline = deadlineOf(call);
    const results = req.requests.map((r) =>
      result(async () => {
        const c = check(r);
        return respond(await embed('bulk', r, c, deadline, signal), c);
      }),
    );
    return { results: await Promise.all(results) };
  };

  return {
    Classify: unary(classify, mapError, (code, seconds) => {
      metrics.requests.inc({ code: codeName(code) });
      metrics.requestSeconds.observe(seconds);
    }),
    ClassifyBatch: unary(classifyBatch, mapError, (code, seconds) => {
      metrics.batchRequests.inc({ code: codeName(code) });
      metrics.batchRequestSeconds.observe(seconds);
    }),
  };
}
