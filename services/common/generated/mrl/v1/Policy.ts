// Original file: protos/mrl/v1/classifier.proto

export const Policy = {
  /**
   * The cascade: the first stage whose top probability reaches its threshold answers.
   */
  POLICY_UNSPECIFIED: 'POLICY_UNSPECIFIED',
  POLICY_CASCADE: 'POLICY_CASCADE',
  /**
   * Always the full size (or the cap): the no-cascade baseline.
   */
  POLICY_FULL: 'POLICY_FULL',
} as const;

export type Policy =
  /**
   * The cascade: the first stage whose top probability reaches its threshold answers.
   */
  | 'POLICY_UNSPECIFIED'
  | 0
  | 'POLICY_CASCADE'
  | 1
  /**
   * Always the full size (or the cap): the no-cascade baseline.
   */
  | 'POLICY_FULL'
  | 2

export type Policy__Output = typeof Policy[keyof typeof Policy]
