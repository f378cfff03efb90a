#!/usr/bin/env -S node --
// The `capsule-reverse-proxy` command; see launch.js.
import { launch } from './launch.js';

await launch('capsule-reverse-proxy');
