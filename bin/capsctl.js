#!/usr/bin/env -S node --
// The `capsctl` command (gen-2 FaaS client, src/faas/gen2/capsctl.ts); see launch.js.
import { launch } from './launch.js';

await launch('capsctl', 'faas/gen2/capsctl');
