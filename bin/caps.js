#!/usr/bin/env -S node --
// `caps`, Go Capsule's gen-1 FaaS client (src/faas/clients/caps.ts); see launch.js.
import { launch } from './launch.js';

await launch('caps', 'faas/clients/caps');
