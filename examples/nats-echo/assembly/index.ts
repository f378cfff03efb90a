// nats-echo: a NATS responder (capsule-abi.md §8 callHandleMessage). Every message is logged; its
// answer is published to the reply subject when the sender asked for one (`nats request`).
//   capsule nats --wasm=examples/nats-echo/nats-echo.wasm --nats-server=nats://127.0.0.1:4222 --subject=echo
import { setHandleMessage, Message, log, fail } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";
export { callHandleMessage } from "@capsule/mdk-assemblyscript/exports-message";

setHandleMessage((m: Message): string => {
  log("📨 " + m.subject + ": " + m.text);
  if (m.data.length == 0) return fail("nothing to echo"); // replied with the header Capsule-Error: true
  return "echo: " + m.text;
});
