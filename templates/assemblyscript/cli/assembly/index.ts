// {{name}}: a CLI function (capsule run {{name}}.wasm Bob Morane → 👋 Hello Bob Morane).
import { setHandle, fail } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";

setHandle((params: string): string => {
  if (params.length == 0) return fail("give me a name: capsule run {{name}}.wasm Bob"); // exit code 1
  return "👋 Hello " + params; // printed by the runner, exit code 0
});
