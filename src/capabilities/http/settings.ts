/** Settings of outbound HTTP (`hostHTTP`, `hostHttp`): its limits. Declared once for every source. */
import { parseDuration, parseSize } from '../../base/units.ts';
import { setNumber, type CapabilitySettingDeclarations } from '../../base/settings.ts';

/** `httpTimeout`, `maxResponse`. */
export const httpSettings: CapabilitySettingDeclarations = {
  settings: [
    { key: 'httpTimeout', flag: '--http-timeout <duration>', default: '10s', apply: setNumber('http', 'timeoutMs', parseDuration), description: 'outbound HTTP: deadline of one exchange, redirects and body included' },
    { key: 'maxResponse', flag: '--max-response <size>', default: '10MiB', apply: setNumber('http', 'maxResponseBytes', parseSize), description: 'outbound HTTP: largest response body accepted' },
  ],
};
