/**
 * The functions a Capsule gen-2 module exports (capsule-abi.md §2.1, §5.2). Re-export them from
 * the module's entry file: `export * from "@capsule/mdk-assemblyscript/exports";`
 */
export { malloc, free, allocateBuffer, callHandle, callHandleJSON, callHandleHTTP } from "./abi";
