// hello-world: the Capsule CLI example (capsule run --wasm=… --params="Bob Morane").
import { setHandle, print } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";

setHandle((params: string): string => {
  print("📝 module parameter(s): " + params);
  return "👋 Hello " + params;
});
