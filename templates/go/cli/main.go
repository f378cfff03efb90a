// {{name}}: a CLI function (capsule run {{name}}.wasm Bob Morane → 👋 Hello Bob Morane).
package main

import (
	"errors"

	capsule "github.com/capsule-run/capsule/mdk/go"
)

func main() {
	capsule.SetHandle(func(params []byte) ([]byte, error) {
		if len(params) == 0 {
			return nil, errors.New("give me a name: capsule run {{name}}.wasm Bob") // exit code 1
		}
		return []byte("👋 Hello " + string(params)), nil // printed by the runner, exit code 0
	})
}
