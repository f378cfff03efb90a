// `export * from "@capsule/mdk-assemblyscript/exports";` in a module's entry file exports the ABI.
export * from "./assembly/exports";
