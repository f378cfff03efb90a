#!/usr/bin/env -S node --
// The `capsule-registry` command; see launch.js.
import { launch } from './launch.js';

await launch('capsule-registry');
