/**
 * Glob patterns for cache key filters (capsule-abi.md §7.4), with the Redis `KEYS` syntax so one
 * pattern means the same on both backends: `*` any run of characters (also none), `?` exactly one
 * character, `[abc]` / `[a-z]` one of a set, `[^a]` / `[!a]` one not in it, `\x` the character
 * `x` itself. Every other character matches itself. Patterns match the whole key.
 */

const cache = new Map<string, RegExp>();

/**
 * Compiles a glob to an anchored RegExp (cached; at most 256 patterns are kept).
 * A `[` without its `]` matches a literal `[` (as Redis does).
 */
export function globToRegExp(pattern: string): RegExp {
  const hit = cache.get(pattern);
  if (hit) return hit;
  let re = '^';
  const chars = [...pattern]; // code points, so `?` matches one character, not one UTF-16 unit
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '*') re += '[\\s\\S]*';
    else if (c === '?') re += '[\\s\\S]';
    else if (c === '\\' && i + 1 < chars.length) re += escape(chars[++i]!);
    else if (c === '[') {
      const end = chars.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let body = chars.slice(i + 1, end);
      let negate = false;
      if (body[0] === '^' || body[0] === '!') {
        negate = true;
        body = body.slice(1);
      }
      let set = '';
      for (let k = 0; k < body.length; k++) {
        const b = body[k]!;
        if (b === '\\' && k + 1 < body.length) set += escape(body[++k]!, true);
        else if (b === '-' && k > 0 && k + 1 < body.length) set += '-';
        else set += escape(b, true);
      }
      re += `[${negate ? '^' : ''}${set}]`;
      i = end;
    } else {
      re += escape(c);
    }
  }
  const compiled = new RegExp(re + '$', 'u');
  if (cache.size >= 256) cache.delete(cache.keys().next().value!);
  cache.set(pattern, compiled);
  return compiled;
}

/** Escapes a regex syntax character (`-` too inside a class; `u` mode allows nothing else). */
function escape(c: string, inClass = false): string {
  return /[\\^$.*+?()[\]{}|/]/.test(c) || (inClass && c === '-') ? '\\' + c : c;
}

/** Whether `key` matches the glob `pattern` (see the module comment). */
export function globMatch(pattern: string, key: string): boolean {
  return globToRegExp(pattern).test(key);
}
