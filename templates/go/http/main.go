// {{name}}: an HTTP function (capsule serve {{name}}.wasm).
//
//	POST {"name":"Bob Morane"}      →  200 {"message":"👋 Hello Bob Morane"}
//	a body that is not such a JSON  →  400 {"error":"…"}
package main

import (
	"encoding/json"

	capsule "github.com/capsule-run/capsule/mdk/go"
	"github.com/valyala/fastjson"
)

// answer is a JSON response; the value is escaped by encoding/json.
func answer(status int, key, value string) capsule.HTTPResponse {
	text, _ := json.Marshal(map[string]string{key: value})
	return capsule.HTTPResponse{
		JSONBody:   string(text),
		Headers:    `{"Content-Type": "application/json; charset=utf-8"}`,
		StatusCode: status,
	}
}

func main() {
	capsule.SetHandleHTTP(func(req capsule.HTTPRequest) (capsule.HTTPResponse, error) {
		var p fastjson.Parser
		body, err := p.Parse(req.Body)
		if err != nil || body.Type() != fastjson.TypeObject || len(body.GetStringBytes("name")) == 0 {
			return answer(400, "error", `send a JSON object like {"name":"Bob Morane"}`), nil
		}
		return answer(200, "message", "👋 Hello "+string(body.GetStringBytes("name"))), nil
	})
}
