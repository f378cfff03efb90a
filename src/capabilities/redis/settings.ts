/** Settings of the Redis capability (capsule-abi.md §5.7): the server. Declared once for every source. */
import type { CapabilitySettingDeclarations } from '../../base/settings.ts';
import { parseRedisUri } from './config.ts';

/** `redisUri`. */
export const redisSettings: CapabilitySettingDeclarations = {
  settings: [
    {
      key: 'redisUri', flag: '--redis-uri <url>',
      description: 'Redis server (redis://[:password@]host:port[/db]; default: REDIS_URI, else REDIS_ADDR/REDIS_PWD/REDIS_DEFAULTDB)',
      apply: (s, v, name) => { s.redis = parseRedisUri(v, name); },
    },
  ],
};
