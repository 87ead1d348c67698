import { status } from '@grpc/grpc-js';
import type { InputSpec } from '../../matryoshka/bundle.js';
import { firstNonFinite } from '../common/finite.js';
import { StatusError, invalidArgument } from '../common/statusError.js';

/**
 * Why the model's embedding of `input` cannot be answered, if it cannot: it is not finite. Inputs
 * far outside the range the model takes overflow it (a 28×28 tensor of 1e38 gives NaN): the
 * caller's fault, and never a meaningless label. An input within that range that still gives one
 * is the model's fault: UNAVAILABLE, which the cascade's breaker counts.
 */
export function embeddingError(input: Float32Array, embedding: Float32Array, spec: InputSpec): StatusError | undefined {
  if (firstNonFinite(embedding) < 0) return undefined;
  const ends = [spec.offset, 255 * spec.scale + spec.offset].map((v) => Number(v.toPrecision(6)));
  const lo = Math.min(...ends);
  const hi = Math.max(...ends);
  for (const v of input)
    if (!(v >= lo && v <= hi))
      return invalidArgument(`input gave a non-finite embedding: its values are far outside the ${lo} to ${hi} the model takes (pixel byte × scale + offset)`);
  return new StatusError(status.UNAVAILABLE, "the encoder's model gave a non-finite embedding for an input within the range it takes");
}
