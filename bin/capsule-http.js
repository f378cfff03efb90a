#!/usr/bin/env -S node --
// The `capsule-http` command; see launch.js.
import { launch } from './launch.js';

await launch('capsule-http');
