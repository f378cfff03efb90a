/**
 * Extension (capsule-abi.md §8, reserved): the gen-2 message handler `callHandleMessage` for
 * NATS and MQTT triggers. Opt-in, because exporting it announces a message handler:
 *   export { callHandleMessage } from "@capsule/mdk-assemblyscript/exports-message";
 */
import { decodeUTF8 } from "./utf8";
import { JSON } from "./json";
import { base64Decode } from "./base64";
import { abiBegin, abiFinish, abiFail } from "./abi";

/** A message delivered by a NATS or MQTT trigger. */
export class Message {
  /** NATS subject (empty for MQTT). */
  subject: string = "";
  /** MQTT topic (empty for NATS). */
  topic: string = "";
  /** The payload bytes. */
  data: Uint8Array = new Uint8Array(0);
  /** NATS headers / MQTT v5 user properties. */
  headers: Map<string, string> = new Map<string, string>();
  /** Where the result is published (reply subject or response topic); empty when none. */
  replyTo: string = "";

  /** The payload decoded as UTF-8 text (invalid bytes → U+FFFD). */
  get text(): string {
    return decodeUTF8(this.data.dataStart, <usize>this.data.length);
  }
}

/** A `callHandleMessage` handler: its result is published to `replyTo` when set; `fail()` → error reply. */
export type MessageHandler = (message: Message) => string;

let messageHandler: MessageHandler | null = null;

/** Registers the handler `callHandleMessage` runs (call it from top-level code). */
export function setHandleMessage(fn: MessageHandler): void {
  messageHandler = fn;
}

/**
 * Export `callHandleMessage(ptr, len) -> i64` (§8): input JSON
 * `{"Subject"|"Topic":…,"Data":"<base64>","Headers":{…},"ReplyTo":…}`, result `S<payload>` / `F<err>`.
 */
export function callHandleMessage(ptr: usize, len: usize): u64 {
  abiBegin();
  let h = messageHandler;
  if (h === null) return abiFail("this module registered no message handler: call setHandleMessage(...) in its top-level code");
  let parsed = JSON.tryParse(decodeUTF8(ptr, len));
  let v = parsed.value;
  if (v === null || !v.isObject) return abiFail("the message is not a JSON object: " + parsed.error);
  let m = new Message();
  m.subject = v.getString("Subject");
  m.topic = v.getString("Topic");
  m.replyTo = v.getString("ReplyTo");
  let data = base64Decode(v.getString("Data"));
  if (data === null) return abiFail("the message Data is not base64");
  m.data = data;
  let hs = v.get("Headers");
  if (hs !== null && hs.isObject) {
    for (let i = 0; i < hs.keys.length; i++) {
      let value = unchecked(hs.values[i]);
      m.headers.set(unchecked(hs.keys[i]), value.isString ? value.str : value.toString());
    }
  }
  return abiFinish(h(m));
}
