// node:http, taken with process.getBuiltinModule rather than an ES import: an
// ES `import … from 'node:http'` makes Node load its own bundled copy of undici
// (measured: +13 MB resident in a bare process), which baton never uses (the
// proxy has its own upstream client). Types still come from `import type … 'node:http'`.

export const nodeHttp: typeof import('node:http') = process.getBuiltinModule('node:http');
