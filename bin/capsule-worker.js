#!/usr/bin/env -S node --
// The `capsule-worker` command; see launch.js.
import { launch } from './launch.js';

await launch('capsule-worker');
