import { readFile } from 'node:fs/promises';
import type { Bundle } from '../matryoshka/bundle.js';
import { classifierClient, classify, sliceTensor } from './clients.js';
import type { ClassifyRequest } from '../services/common/generated/mrl/v1/ClassifyRequest.js';
import type { ClassifyResponse__Output } from '../services/common/generated/mrl/v1/ClassifyResponse.js';
import { loadTestSlice } from './testSlice.js';

export interface ClassifyOptions {
  target: string;
  image?: string;
  sample?: number;
  maxDimension: number;
  policy: 'cascade' | 'full';
  topK: number;
  json: boolean;
  timeoutMs: number;
}

function describe(res: ClassifyResponse__Output, truth?: string): string {
  const lines = [
    `label:          ${res.label} (class ${res.class_index})${truth === undefined ? '' : `   true label: ${truth}`}`,
    `confidence:     ${res.confidence.toFixed(4)}`,
    `dimension used: ${res.dimension_used}`,
    `model:          ${res.model}`,
    'trace:',
    ...res.trace.map(
      (s) =>
        `  ${String(s.dimension).padStart(4)}-d  top ${s.top_probability.toFixed(4)}  threshold ${s.threshold.toFixed(4)}  ` +
        `${s.escalated ? 'escalated' : 'answered'}`,
    ),
  ];
  if (res.top.length > 1) lines.push('top:', ...res.top.map((p) => `  ${p.probability.toFixed(4)}  ${p.label}`));
  return lines.join('\n');
}

/** `mrl classify <image>` or `mrl classify --sample N`: one Classify call to a running cascade. */
export async function classifyCommand(options: ClassifyOptions, bundle: Bundle): Promise<number> {
  const base: ClassifyRequest = {
    max_dimension: options.maxDimension,
    policy: options.policy === 'full' ? 'POLICY_FULL' : 'POLICY_CASCADE',
    top_k: options.topK,
  };
  let request: ClassifyRequest;
  let truth: string | undefined;
  if (options.image) {
    request = { ...base, image: await readFile(options.image) };
  } else {
    const slice = await loadTestSlice(bundle);
    const index = options.sample!;
    if (!Number.isInteger(index) || index < 0 || index >= slice.count)
      throw new Error(`--sample must be an integer from 0 to ${slice.count - 1}`);
    request = { ...base, tensor: sliceTensor(slice, index, bundle) };
    truth = bundle.labels[slice.labels[index]!];
  }
  const client = classifierClient(options.target);
  try {
    const res = await classify(client, request, options.timeoutMs);
    console.log(options.json ? JSON.stringify({ ...res, ...(truth === undefined ? {} : { true_label: truth }) }) : describe(res, truth));
    return 0;
  } finally {
    client.close();
  }
}
