// kv-counter: seed 004's counter (the wasmCloud "kvcounter" actor) in Go. Every request increments
// the counter of its path atomically in the function's KV store (capsule.KvIncrement): the memory
// cache shared by every worker of the process, or Redis (INCRBY) when one is configured.
//
//	GET /bloggo → {"counter":1}, then {"counter":2}, …
package main

import (
	"net/url"
	"strconv"

	capsule "github.com/capsule-run/capsule/mdk/go"
)

func main() {
	capsule.SetHandleHTTP(func(param capsule.HTTPRequest) (capsule.HTTPResponse, error) {
		path := "/"
		if u, err := url.Parse(param.URI); err == nil && u.Path != "" {
			path = u.Path
		}
		counter, err := capsule.KvIncrement("counter:"+path, 1)
		if err != nil {
			return capsule.HTTPResponse{}, err // 500 with the error text
		}
		return capsule.HTTPResponse{
			JSONBody:   `{"counter":` + strconv.FormatInt(counter, 10) + `}`,
			Headers:    `{"Content-Type": "application/json; charset=utf-8"}`,
			StatusCode: 200,
		}, nil
	})
}
