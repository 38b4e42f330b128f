// Port allocation: free, bindable, never handed out twice in a row.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { allocatePort } from '../../src/supervisor/index.ts';

test('allocatePort gives distinct ports that can be bound', async () => {
  const ports: number[] = [];
  for (let i = 0; i < 50; i++) ports.push(await allocatePort());
  assert.equal(new Set(ports).size, ports.length, 'no port handed out twice');
  for (const p of ports) assert.ok(p > 0 && p < 65536);
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(ports[0], '127.0.0.1', resolve);
    });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});
