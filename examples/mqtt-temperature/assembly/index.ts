// mqtt-temperature: logs temperature readings from sensors/<id>/temperature and republishes an
// alert on alerts/<id> when a reading is above ALERT_ABOVE (°C, default 30).
// A reading is a number ("31.5") or JSON ({"celsius": 31.5}).
//   capsule mqtt --wasm=examples/mqtt-temperature/mqtt-temperature.wasm \
//     --mqtt-server=mqtt://127.0.0.1:1883 --topic='sensors/+/temperature' --qos=1 --env ALERT_ABOVE=30
import { setHandleMessage, Message, log, fail, getEnv, mqttPublish, JSON, JSONValue } from "@capsule/mdk-assemblyscript";
export * from "@capsule/mdk-assemblyscript/exports";
export { callHandleMessage } from "@capsule/mdk-assemblyscript/exports-message";

/** The sensor id: the level between "sensors/" and "/temperature". */
function sensorOf(topic: string): string {
  let parts = topic.split("/");
  return parts.length >= 3 ? parts[1] : topic;
}

setHandleMessage((m: Message): string => {
  let parsed = JSON.tryParse(m.text.trim());
  if (!parsed.ok) return fail("not a temperature: " + m.text);
  let v = parsed.value!;
  let celsius: f64;
  if (v.isNumber) celsius = v.asNumber();
  else if (v.isObject && v.has("celsius")) celsius = v.getNumber("celsius");
  else return fail("expected a number or {\"celsius\": <number>}, got " + m.text);

  let sensor = sensorOf(m.topic);
  log("🌡️ " + sensor + ": " + celsius.toString() + " °C");

  let limitText = getEnv("ALERT_ABOVE");
  let limit: f64 = limitText.length > 0 ? parseFloat(limitText) : 30;
  if (celsius > limit) {
    let alert = JSONValue.object().setString("sensor", sensor).setNumber("celsius", celsius).setNumber("above", limit);
    let r = mqttPublish("alerts/" + sensor, alert.toString());
    if (!r.ok) return fail("cannot publish the alert: " + r.error);
    log("🔥 alert published on alerts/" + sensor);
    return "alert";
  }
  return "ok";
});
