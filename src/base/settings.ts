/**
 * The settings of one function as the engine, the ABIs and the capabilities see them: its grants
 * (mounts, hosts, environment), its limits and the capability settings (outbound HTTP limits,
 * cache, KV, Redis, CouchBase). Plain data: it crosses to the worker threads by structured clone.
 * The defaults live with their owners (engine `DEFAULTS`, `CAPABILITY_DEFAULTS`).
 */

/** One granted directory. */
export interface Mount {
  /** Absolute, symlink-free host directory. */
  readonly hostPath: string;
  /** Absolute, normalised guest path (`/` for `--dir .`, `/data` for `--dir ./data`). */
  readonly guestPath: string;
  readonly readOnly: boolean;
  /** The grant as the user wrote it, for messages. */
  readonly spec: string;
}

/** A Redis server (capsule-abi.md §5.7). */
export interface RedisSettings {
  /** `redis://[:password@]host:port[/db]` or `rediss://…`. */
  readonly url: string;
  /** Where the URL came from, for messages (`--redis-uri`, `REDIS_URI`, `REDIS_ADDR`, default); default `option redis.url`. */
  readonly origin?: string;
}

/** A CouchBase cluster (capsule-abi.md §4.7 environment; conventions.md §5). */
export interface CouchbaseSettings {
  /** Connection string, e.g. `couchbase://127.0.0.1`. */
  readonly cluster: string;
  readonly user: string;
  readonly password: string;
  readonly bucket: string;
}

/** Capability settings of one function. */
export interface CapabilitySettings {
  /**
   * The function's name: it namespaces the memory cache and the memory KV (multi-function
   * servers give each function its own). Default: the module's name.
   */
  name?: string;
  /** Outbound HTTP (`hostHTTP`, `hostHttp`) limits. */
  http?: {
    /** Whole exchange (redirects and body included), ms. Default 10 000. */
    timeoutMs?: number;
    /** Largest response body accepted, bytes. Default 10 MiB. */
    maxResponseBytes?: number;
  };
  /** Memory cache limits, per function (capsule-abi.md §7.4). */
  cache?: {
    /** Entries. Default 10 000. */
    maxEntries?: number;
    /** Bytes of keys and values (UTF-8 keys, raw values). Default 64 MiB. */
    maxBytes?: number;
  };
  /**
   * Backend of `hostKvIncrement` (§8): the memory cache, or Redis `INCRBY`. Default: `redis`
   * when a Redis server is configured (`redis` set, or `REDIS_URI`/`REDIS_ADDR` in the runner's
   * environment), else `memory`.
   */
  kv?: 'memory' | 'redis';
  /** Redis server; default from `REDIS_URI`, else `REDIS_ADDR`/`REDIS_PWD`/`REDIS_DEFAULTDB`. */
  redis?: RedisSettings;
  /** CouchBase cluster; default from `COUCHBASE_CLUSTER` (unset = not configured). */
  couchbase?: CouchbaseSettings;
}

/**
 * Settings of one function (module + grants + limits), as sent to workers. The capability
 * settings (HTTP limits, cache, KV, Redis, CouchBase) are optional fields of `CapabilitySettings`.
 */
export interface FunctionSettings extends CapabilitySettings {
  /** Guest-visible environment (conventions.md §2), in order. */
  env: [string, string][];
  mounts: Mount[];
  allowedHosts: string[];
  /** Linear-memory cap per instance, bytes (rounded down to 64 KiB pages). */
  maxMemoryBytes: number;
  /** Keep one long-lived instance per worker (gen 2 only). */
  reuse: boolean;
  /** `inherit`: guest stdio goes to the process (CLI); `capture`: returned with the result (servers). */
  stdio: 'inherit' | 'capture';
  /** Cap on captured stdout/stderr/log per call, bytes. */
  maxLogBytes: number;
  capsuleVersion: string;
  /**
   * Extism plugins over HTTP (extism-abi.md §11): `raw` (default) = request body in, response
   * body out; `capsule` = the gen-2 request JSON in, the gen-2 response JSON out.
   */
  extismMode?: ExtismMode;
  /** Host functions the embedder defined (host SDK `hostFunctions`), as the workers see them. */
  userFunctions?: UserFunctionsDecl;
}

/** How an Extism plugin sees an HTTP request (extism-abi.md §11). */
export type ExtismMode = 'raw' | 'capsule';

/**
 * One declared setting of a function (a capability's, in `capabilities/<name>/settings.ts`): every
 * source reads it from this one entry. The CLI flag is `flag`, its `CAPSULE_*` variable is the
 * flag in upper snake case (`--http-timeout` → `CAPSULE_HTTP_TIMEOUT`), the key of a config file,
 * a routes file entry or an API body is `key`.
 */
export interface SettingDeclaration<S = CapabilitySettings> {
  /** Key in YAML files, routes entries and API bodies: the flag's name in camelCase (`httpTimeout`). */
  readonly key: string;
  /** The CLI flag with its value placeholder (`--http-timeout <duration>`). */
  readonly flag: string;
  /** Help text of the flag. */
  readonly description: string;
  /** Default as a user would write it (`10s`), shown in the help; absent: none (or from the environment). */
  readonly default?: string;
  /** The values allowed, when it is a choice. */
  readonly choices?: readonly string[];
  /**
   * Checks a value and stores it into the settings.
   * @param name names the key and its source in messages (`--http-timeout`, `fns.yaml: "functions.a.httpTimeout"`)
   * @throws CapsuleError USAGE naming `name` when the value is not valid
   */
  apply(settings: S, value: string, name: string): void;
}

/** The declarations of one capability, and what completes them once all are read. */
export interface CapabilitySettingDeclarations {
  readonly settings: readonly SettingDeclaration[];
  /**
   * Runs after every declaration was applied (only when one of them was given): fills what the
   * runner's environment provides (CouchBase user, password…).
   * @param names the `name` of each declaration given, by key
   * @throws CapsuleError USAGE when what was given is not enough
   */
  complete?(settings: CapabilitySettings, env: NodeJS.ProcessEnv, names: ReadonlyMap<string, string>): void;
}

/** Capability settings that are groups of numbers (`http`, `cache`). */
type NumberGroups = { [G in 'http' | 'cache']-?: keyof NonNullable<CapabilitySettings[G]> };

/**
 * The `apply` of a setting that is one number of a group (`http.timeoutMs`), parsed by `parse`
 * (`parseDuration`, `parseSize`, …, which throw USAGE naming `name`).
 */
export function setNumber<G extends keyof NumberGroups>(group: G, field: NumberGroups[G], parse: (text: string, name: string) => number): SettingDeclaration['apply'] {
  return (s, v, name) => {
    s[group] = { ...s[group], [field]: parse(v, name) };
  };
}

/** What a worker needs to know of one defined function (plain data, sent with the settings; abi/user-functions.ts). */
export interface UserFunctionDecl {
  /** `capsule` = a `CapsuleHostFunctionDef`; `plain` = wasm values in and out. */
  shape: 'plain' | 'capsule';
  /** `s` = (ptr, len) bytes, `n` = one i32 (capabilities/types.ts ParamKind). */
  params?: ('s' | 'n')[];
  returns?: boolean;
  /** The import's declared result types (plain functions), to convert the returned value. */
  results?: string[];
}

/** The defined functions of a module as sent to its workers (`FunctionSettings.userFunctions`). */
export interface UserFunctionsDecl {
  /** The main-thread service that runs them. */
  service: string;
  namespaces: Record<string, Record<string, UserFunctionDecl>>;
}
