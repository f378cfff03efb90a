// {{name}}: a message function (capsule nats {{name}}.wasm / capsule mqtt {{name}}.wasm).
// Each message is logged and answered "echo: <text>"; the runner publishes the answer to the
// message's reply subject (NATS) or response topic (MQTT) when it has one.
import { setHandleMessage, Message, log, fail } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";
export { callHandleMessage } from "@capsule/mdk-assemblyscript/exports-message";

setHandleMessage((m: Message): string => {
  let from = m.subject.length > 0 ? m.subject : m.topic; // NATS subject or MQTT topic
  log("📨 " + from + ": " + m.text);
  if (m.text.length == 0) return fail("nothing to echo"); // an error reply (header Capsule-Error: true)
  return "echo: " + m.text;
});
