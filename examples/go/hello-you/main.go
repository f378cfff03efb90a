// hello-you: an HTTP function in Go that reads a JSON body with fastjson and answers JSON.
//
//	POST {"name":"Bob Morane","age":42}  →  200 {"message":"Bob Morane 42"}
//	a body that is not a JSON object     →  400 {"error":"…"}
//
//	capsule serve --wasm=examples/go/hello-you/hello-you.wasm --http-port=8080
package main

import (
	"encoding/json"

	capsule "github.com/capsule-run/capsule/mdk/go"
	"github.com/valyala/fastjson"
)

// answer is a JSON response; values are escaped by encoding/json.
func answer(status int, key, value string) capsule.HTTPResponse {
	text, _ := json.Marshal(map[string]string{key: value})
	return capsule.HTTPResponse{
		JSONBody:   string(text),
		Headers:    `{"Content-Type": "application/json; charset=utf-8"}`,
		StatusCode: status,
	}
}

func main() {
	capsule.SetHandleHTTP(func(param capsule.HTTPRequest) (capsule.HTTPResponse, error) {
		var p fastjson.Parser
		v, err := p.Parse(param.Body)
		if err != nil {
			return answer(400, "error", "the body is not valid JSON: "+err.Error()), nil
		}
		if v.Type() != fastjson.TypeObject {
			return answer(400, "error", `the body must be a JSON object like {"name":"Bob Morane","age":42}`), nil
		}
		// "age" may be a number or a string; a number is printed as it was written (42, not 42.0)
		age := ""
		if a := v.Get("age"); a != nil && a.Type() == fastjson.TypeString {
			age = string(a.GetStringBytes())
		} else if a != nil {
			age = a.String()
		}
		return answer(200, "message", string(v.GetStringBytes("name"))+" "+age), nil
	})
}
