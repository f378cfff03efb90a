// file-reader: returns the content of the file named by the parameter (hostReadFile). The host
// reads only inside the directories granted to the function (--dir, or dir in
// file-reader.capsule.yaml: ./data mounted read-only at /data).
//   capsule run file-reader.wasm /data/hello.txt
import { setHandle, fail, readFile } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";

setHandle((path: string): string => {
  if (path.length == 0) return fail("give me a path, e.g. /data/hello.txt");
  let r = readFile(path);
  return r.ok ? r.value : fail(r.error);
});
