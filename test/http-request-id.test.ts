/**
 * The ids the HTTP pipeline gives requests without a usable X-Request-Id
 * (src/triggers/shared/request-id.ts): random version-4 UUIDs, as crypto.randomUUID() writes them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { newRequestId } from '../src/triggers/shared/request-id.ts';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('request ids', () => {
  it('are version-4 UUIDs, all different across many batches', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const id = newRequestId();
      assert.match(id, UUID_V4);
      ids.add(id);
    }
    assert.equal(ids.size, 20_000);
  });

  it('use every hex digit in every random position (not a counter or a fixed part)', () => {
    const seen = Array.from({ length: 36 }, () => new Set<string>());
    for (let i = 0; i < 2_000; i++) [...newRequestId()].forEach((c, at) => seen[at]!.add(c));
    seen.forEach((s, at) => {
      const fixed = [8, 13, 18, 23].includes(at) ? 1 : at === 14 ? 1 : at === 19 ? 4 : 16;
      assert.equal(s.size, fixed, `position ${at}`);
    });
  });
});
