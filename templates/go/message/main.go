// {{name}}: a message function (capsule nats {{name}}.wasm / capsule mqtt {{name}}.wasm).
// Each message is logged and answered "echo: <text>"; the runner publishes the answer to the
// message's reply subject (NATS) or response topic (MQTT) when it has one.
package main

import (
	"errors"

	capsule "github.com/capsule-run/capsule/mdk/go"
)

func main() {
	capsule.SetHandleMessage(func(msg capsule.Message) ([]byte, error) {
		from := msg.Subject
		if from == "" {
			from = msg.Topic // MQTT
		}
		capsule.Log("📨 " + from + ": " + string(msg.Data))
		if len(msg.Data) == 0 {
			return nil, errors.New("nothing to echo") // an error reply (header Capsule-Error: true)
		}
		return append([]byte("echo: "), msg.Data...), nil
	})
}
