// nats-echo: a NATS responder in Go (the capsule-abi.md §8 message handler). Every message is
// logged; the answer is published to the reply subject when the sender asked for one.
//
//	capsule nats --wasm=examples/go/nats-echo/nats-echo.wasm --nats-server=nats://127.0.0.1:4222 --subject=echo
//	nats request echo hello    # echo: hello
package main

import (
	"errors"

	capsule "github.com/capsule-run/capsule/mdk/go"
)

func main() {
	capsule.SetHandleMessage(func(msg capsule.Message) ([]byte, error) {
		capsule.Log("📨 " + msg.Subject + ": " + string(msg.Data))
		if len(msg.Data) == 0 {
			return nil, errors.New("nothing to echo") // replied with the header Capsule-Error: true
		}
		return append([]byte("echo: "), msg.Data...), nil
	})
}
