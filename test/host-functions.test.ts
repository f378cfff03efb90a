/**
 * Every host function of the spec tables is provided with its exact wasm parameter count
 * (capsule-abi.md §4.7 gen 1, §5.7 gen 2, §8 extensions, conventions §5), so modules that import
 * any of them load.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { findHostFunction } from '../src/capabilities/index.ts';
import { wasmArity } from '../src/abi/host-imports.ts';

const GEN1: Record<string, number> = {
  hostLogString: 2, hostGetHostInformation: 2, hostPing: 4, hostHttp: 10, hostReadFile: 4, hostWriteFile: 6,
  hostGetEnv: 4, hostRedisSet: 6, hostRedisGet: 4, hostRedisKeys: 4, hostCouchBaseQuery: 4, hostMemorySet: 6,
  hostMemoryGet: 4, hostMemoryKeys: 2, hostNatsPublish: 6, hostNatsConnectPublish: 8, hostNatsGetSubject: 2,
  hostNatsGetServer: 2, hostNatsConnectRequest: 9, hostNatsReply: 5, hostMqttPublish: 6, hostMqttConnectPublish: 10,
  hostMqttGetTopic: 2, hostMqttGetServer: 2, hostMqttGetClientId: 2, hostGetExitError: 2, hostGetExitCode: 2,
  hostRequestParamsGet: 3,
};
const GEN2: Record<string, number> = {
  hostPrintString: 2, hostLogString: 2, hostGetEnv: 4, hostReadFile: 4, hostWriteFile: 6, hostHTTP: 4,
  hostCacheSet: 6, hostCacheGet: 4, hostCacheDel: 4, hostCacheKeys: 4, hostRedisSet: 6, hostRedisGet: 4,
  hostRedisDel: 4, hostRedisKeys: 4, hostTalk: 4,
  // §8 extensions and conventions §5
  hostNatsPublish: 6, hostNatsRequest: 7, hostMqttPublish: 6, hostKvIncrement: 6, hostCouchBaseQuery: 4,
};

describe('host-function tables', () => {
  for (const [gen, table] of [[1, GEN1], [2, GEN2]] as const) {
    it(`provides every gen-${gen} host function with its wasm parameter count`, () => {
      const missing: string[] = [];
      for (const [name, arity] of Object.entries(table)) {
        const f = findHostFunction(name, gen);
        if (!f) {
          missing.push(name);
          continue;
        }
        assert.equal(wasmArity(f), arity, `${name} (gen ${gen})`);
      }
      assert.deepEqual(missing, [], `gen-${gen} host functions not provided`);
    });
  }
});
