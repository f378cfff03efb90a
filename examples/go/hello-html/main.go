// hello-html: an HTTP function in Go that answers an HTML page (any method, any path); the page
// is embedded in the module with go:embed.
//
//	capsule serve --wasm=examples/go/hello-html/hello-html.wasm --http-port=8080
package main

import (
	_ "embed"
	"html"
	"strings"

	capsule "github.com/capsule-run/capsule/mdk/go"
)

//go:embed index.html
var page string

func main() {
	capsule.SetHandleHTTP(func(param capsule.HTTPRequest) (capsule.HTTPResponse, error) {
		request := html.EscapeString(param.Method + " " + param.URI)
		return capsule.HTTPResponse{
			TextBody: strings.Replace(page, "{{request}}", request, 1),
			Headers: `{
				"Content-Type": "text/html; charset=utf-8",
				"Cache-Control": "no-cache"
			}`,
			StatusCode: 200,
		}, nil
	})
}
