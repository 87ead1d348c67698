/**
 * The node arguments that run the `mrl` CLI from its TypeScript source, through tsx, from the
 * repository root: tests exercise the code as it stands, not whatever dist/ was last built. The
 * `mrl` bin itself runs the compiled CLI; test/compiled.test.ts covers that.
 */
export const MRL = ['--import', 'tsx', 'cli/main.ts'];
