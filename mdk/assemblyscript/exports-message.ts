// `export { callHandleMessage } from "@capsule/mdk-assemblyscript/exports-message";` opts in to
// the gen-2 message handler extension (capsule-abi.md §8).
export { callHandleMessage } from "./assembly/message";
