// Types for the deep import of undici's Pool (src/proxy/target.ts): the module's
// export is the same class undici's index exports.
declare module 'undici/lib/dispatcher/pool.js' {
  const Pool: typeof import('undici').Pool;
  export default Pool;
}
