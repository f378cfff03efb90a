// build: -buildmode=exe

// goenv: a plain Go WASI command (GOOS=wasip1, a `main` that runs and exits; no Capsule MDK), the
// goenv function of the FaaS-server article: it prints its arguments and environment. Served
// CGI-style by `capsule serve` (the request path and query are its arguments, the CGI and
// http_* variables its environment); `capsule run` runs it as a program.
//
//	GOOS=wasip1 GOARCH=wasm go build -o goenv.wasm .
//	curl 'localhost:8080/goenv/some/path?b=2&a=1'
package main

import (
	"fmt"
	"os"
	"sort"
)

func main() {
	// No CGI header block: Capsule answers 200 text/plain with the whole output.
	fmt.Println("Hello from Go (WASI)")
	fmt.Println()
	fmt.Println("argv:")
	for _, a := range os.Args {
		fmt.Println("  " + a)
	}
	fmt.Println()
	fmt.Println("environment:")
	env := os.Environ()
	sort.Strings(env)
	for _, kv := range env {
		fmt.Println("  " + kv)
	}
	if path := os.Getenv("http_path"); path != "" {
		fmt.Println()
		fmt.Printf("you asked for %s with %s\n", path, os.Getenv("http_method"))
	}
}
