/**
 * Process records of the gen-2 FaaS mode (faas-api.md §6): one record per started function
 * revision replica, keyed `"<name>/<revision>/<index>"`, with Go Capsule's JSON field names, kept
 * in memory and written to `CAPSULE_PROCESSES_STORAGE` when that variable is set (§9.7). The
 * table only stores and numbers records; what runs them is ./runners.ts.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

/** `currentStatus` values (faas-api.md §6). */
export const Status = {
  Waiting: 0, Started: 1, Finished: 2, Failed: 3, Cancelled: 4, Stucked: 5, Killed: 6, Stopped: 7,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];

/** `statusDescription` of a status: its name, `Unknown` for any other number (as in Go). */
export function statusLabel(status: number): string {
  return Object.entries(Status).find(([, v]) => v === status)?.[0] ?? 'Unknown';
}

/** One process record, as Go Capsule serialised it (times are RFC 3339 strings). */
export interface ProcessRecord {
  index: number;
  functionName: string;
  functionRevision: string;
  formerFunctionRevision: string;
  /** The port the revision listens on, as a string (Go). */
  httpPort: string;
  description: string;
  currentStatus: StatusCode;
  statusDescription: string;
  createdAt: string;
  startedAt: string;
  finishedAt: string;
  cancelledAt: string;
  failedAt: string;
  checkedAt: string;
  /** The child's pid, or for an in-process revision a synthesized number above any Linux pid. */
  pid: number;
  /** The program run (empty for an in-process revision started without `path`). */
  path: string;
  /** Its arguments, `args[0]` being the program-name slot, `-httpPort=<port>` last. */
  args: string[];
  /** `K=V` variables added to the parent's environment; never in listings. */
  env: string[];
  /** Beyond Go (§9.7): the exit code of a child that ended on its own, when known. */
  exitCode?: number;
}

/** `name/revision/index`, the key of a record. */
export function recordKey(name: string, revision: string, index: number | string): string {
  return `${name}/${revision}/${index}`;
}

/**
 * The records of one FaaS process. Every change is saved to `storage` (when given) as the JSON
 * object key → record, written to a temporary file and renamed so a crash never leaves half a file.
 */
export class ProcessTable {
  readonly #records = new Map<string, ProcessRecord>();
  readonly #storage: string | undefined;
  /** Told about every failed save (the table keeps serving from memory). */
  readonly #onSaveError: (e: Error) => void;

  /**
   * @param storage path of the JSON file (`CAPSULE_PROCESSES_STORAGE`), undefined = memory only
   * @param onSaveError called when a save fails
   */
  constructor(storage: string | undefined, onSaveError: (e: Error) => void = () => {}) {
    this.#storage = storage;
    this.#onSaveError = onSaveError;
  }

  /**
   * Reads the records saved by an earlier run. A missing file is an empty table.
   * @returns the records read (the caller decides what they mean now: nothing of theirs runs yet)
   * @throws Error naming the file when it exists but is not a JSON object of records
   */
  load(): ProcessRecord[] {
    if (!this.#storage) return [];
    let text: string;
    try {
      text = readFileSync(this.#storage, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new Error(`CAPSULE_PROCESSES_STORAGE ${this.#storage}: ${(e as Error).message}`, { cause: e });
    }
    let doc: unknown;
    try {
      doc = text.trim() === '' ? {} : JSON.parse(text);
    } catch (e) {
      throw new Error(`CAPSULE_PROCESSES_STORAGE ${this.#storage}: not JSON (${(e as Error).message})`, { cause: e });
    }
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`CAPSULE_PROCESSES_STORAGE ${this.#storage}: expected a JSON object of process records`);
    const out: ProcessRecord[] = [];
    for (const value of Object.values(doc as Record<string, unknown>)) {
      const r = value as Partial<ProcessRecord>;
      if (typeof r !== 'object' || r === null || typeof r.functionName !== 'string' || typeof r.functionRevision !== 'string' || typeof r.index !== 'number') continue;
      const record = { ...emptyRecord(), ...r, args: Array.isArray(r.args) ? r.args.map(String) : [], env: Array.isArray(r.env) ? r.env.map(String) : [] } as ProcessRecord;
      this.#records.set(recordKey(record.functionName, record.functionRevision, record.index), record);
      out.push(record);
    }
    return out;
  }

  /** The record of a key, or undefined. */
  get(key: string): ProcessRecord | undefined {
    return this.#records.get(key);
  }

  /** Every record of a function revision, lowest index first. */
  ofRevision(name: string, revision: string): ProcessRecord[] {
    return [...this.#records.values()]
      .filter((r) => r.functionName === name && r.functionRevision === revision)
      .sort((a, b) => a.index - b.index);
  }

  /** Every record. */
  all(): ProcessRecord[] {
    return [...this.#records.values()];
  }

  /** Highest index of a revision + 1, 0 for the first (Go's SearchLastIndexOfProcessRecord + 1). */
  nextIndex(name: string, revision: string): number {
    return this.ofRevision(name, revision).reduce((max, r) => Math.max(max, r.index), -1) + 1;
  }

  /** Stores a record under its key (replacing one with the same key) and saves. @returns the key */
  set(record: ProcessRecord): string {
    record.statusDescription = statusLabel(record.currentStatus);
    const key = recordKey(record.functionName, record.functionRevision, record.index);
    this.#records.set(key, record);
    this.save();
    return key;
  }

  /** Changes a record's status (and the matching time field) and saves. */
  setStatus(record: ProcessRecord, status: StatusCode, exitCode?: number): void {
    const now = new Date().toISOString();
    record.currentStatus = status;
    record.checkedAt = now;
    if (status === Status.Started) {
      record.startedAt = now;
      delete record.exitCode;
    }
    if (status === Status.Stopped || status === Status.Finished) record.finishedAt = now;
    if (status === Status.Failed) record.failedAt = now;
    if (exitCode !== undefined) record.exitCode = exitCode;
    if (this.#records.has(recordKey(record.functionName, record.functionRevision, record.index))) this.set(record);
  }

  /** Deletes a record and saves. @returns the record, undefined when there was none */
  delete(key: string): ProcessRecord | undefined {
    const record = this.#records.get(key);
    if (!record) return undefined;
    this.#records.delete(key);
    this.save();
    return record;
  }

  /** The listing of `GET /functions/processes`: key → record without `env`, indented as Go did. */
  listing(): string {
    const out: Record<string, Omit<ProcessRecord, 'env'>> = {};
    for (const [key, r] of this.#records) {
      const { env: _env, ...shown } = r;
      out[key] = { ...shown, statusDescription: statusLabel(r.currentStatus) };
    }
    return JSON.stringify(out, null, 2);
  }

  /** Writes the records (with `env`, needed to restart them) to the storage file, if any. */
  save(): void {
    if (!this.#storage) return;
    const tmp = `${this.#storage}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.#records), null, 2), { mode: 0o600 });
      renameSync(tmp, this.#storage);
    } catch (e) {
      this.#onSaveError(e as Error);
    }
  }
}

/** Go's text for an unknown key on drop, duplicate and notify (sent with status 500). */
export const NOT_FOUND_TEXT = 'Capsule process not found';

/** A record with every field at its zero value (times: now). */
export function emptyRecord(): ProcessRecord {
  const now = new Date().toISOString();
  return {
    index: 0, functionName: '', functionRevision: 'default', formerFunctionRevision: '', httpPort: '', description: '',
    currentStatus: Status.Waiting, statusDescription: 'Waiting',
    createdAt: now, startedAt: now, finishedAt: now, cancelledAt: now, failedAt: now, checkedAt: now,
    pid: 0, path: '', args: [], env: [],
  };
}
