// hello-world: the Capsule CLI example in Go (standard Go ≥ 1.24, the Go MDK).
//
//	capsule run --wasm=examples/go/hello-world/hello-world.wasm --params="Bob Morane"
package main

import (
	capsule "github.com/capsule-run/capsule/mdk/go"
)

func main() {
	capsule.SetHandle(func(params []byte) ([]byte, error) {
		capsule.Print("📝 module parameter(s): " + string(params))
		return []byte("👋 Hello " + string(params)), nil
	})
}
