/**
 * @capsule/mdk-assemblyscript: write Capsule functions (Capsule ABI generation 2,
 * capsule-abi.md §5) in AssemblyScript. See README.md.
 *
 * The module's entry file must also re-export the ABI functions:
 *   export * from "@capsule/mdk-assemblyscript/exports";
 */
export { setHandle, setHandleJSON, setHandleHTTP, fail, httpResult, Handler, JSONHandler, HTTPHandler } from "./abi";
export { Request, RequestParseResult, Response, parseHeaders } from "./http";
export { JSON, JSONValue, JSONKind, JSONParseResult } from "./json";
export {
  print, log, getEnv, talk, readFile, writeFile,
  cacheSet, cacheGet, cacheDel, cacheKeys,
  redisSet, redisGet, redisDel, redisKeys,
  couchBaseQuery, natsPublish, natsRequest, mqttPublish, kvIncrement,
  httpRequest, ClientRequest, ClientResponse, Result,
} from "./host";
export { base64Encode, base64EncodeString, base64Decode } from "./base64";
export { decodeUTF8, encodeUTF8, bytesToString, stringToBytes } from "./utf8";
export { writeStderr } from "./runtime";
export { Message, MessageHandler, setHandleMessage } from "./message";
