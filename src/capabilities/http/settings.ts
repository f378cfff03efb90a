/** Settings of outbound HTTP (`hostHTTP`, `hostHttp`): its limits. Declared once for every source. */
import { parseDuration, parseSize } from '../../base/units.ts';
import type { CapabilitySettingDeclarations } from '../../base/settings.ts';

export const httpSettings: CapabilitySettingDeclarations = {
  settings: [
    {
      key: 'httpTimeout', flag: '--http-timeout <duration>', default: '10s',
      description: 'outbound HTTP: deadline of one exchange, redirects and body included',
      apply: (s, v, name) => { s.http = { ...s.http, timeoutMs: parseDuration(v, name) }; },
    },
    {
      key: 'maxResponse', flag: '--max-response <size>', default: '10MiB',
      description: 'outbound HTTP: largest response body accepted',
      apply: (s, v, name) => { s.http = { ...s.http, maxResponseBytes: parseSize(v, name) }; },
    },
  ],
};
