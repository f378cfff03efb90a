package capsule

import (
	"encoding/base64"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/valyala/fastjson"
)

var (
	handleFunction        func(param []byte) ([]byte, error)
	handleJSONFunction    func(param *fastjson.Value) ([]byte, error)
	handleHTTPFunction    func(param HTTPRequest) (HTTPResponse, error)
	handleMessageFunction func(msg Message) ([]byte, error)
)

// SetHandle registers the handler of `callHandle` (capsule-abi.md §5.2): `capsule run`'s
// parameters in, the result printed by the runner; an error makes the call fail (exit code 1).
func SetHandle(function func(param []byte) ([]byte, error)) {
	handleFunction = function
}

// SetHandleJSON registers the handler of `callHandleJSON`: the input parsed as JSON. A module
// with only this handler also answers `callHandle` with it (so `capsule run` works).
func SetHandleJSON(function func(param *fastjson.Value) ([]byte, error)) {
	handleJSONFunction = function
}

// SetHandleHTTP registers the handler of `callHandleHTTP`: every request `capsule serve` gets.
// An error makes the runner answer 500 with the error text.
func SetHandleHTTP(function func(param HTTPRequest) (HTTPResponse, error)) {
	handleHTTPFunction = function
}

// SetHandleMessage registers the handler of `callHandleMessage` (capsule-abi.md §8): every
// message of `capsule nats` / `capsule mqtt`. Its result is published to msg.ReplyTo when that is
// set; an error is logged and, with a ReplyTo, sent back with the header `Capsule-Error: true`.
func SetHandleMessage(function func(msg Message) ([]byte, error)) {
	handleMessageFunction = function
}

func registered() bool {
	return handleFunction != nil || handleJSONFunction != nil || handleHTTPFunction != nil || handleMessageFunction != nil
}

// guard turns a panic of a handler into a failure result (the stack goes to stderr, which the
// runner logs) instead of a crash of the whole instance.
func guard(result *uint64) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "panic: %v\n%s", r, debug.Stack())
		*result = Failure([]byte(fmt.Sprint("panic: ", r)))
	}
}

func fromHandler(out []byte, err error) uint64 {
	if err != nil {
		return Failure([]byte(err.Error()))
	}
	return Success(out)
}

func runHandle(in []byte) (result uint64) {
	defer guard(&result)
	if handleFunction == nil && handleJSONFunction != nil {
		return runHandleJSON(in)
	}
	if handleFunction == nil {
		return Failure([]byte("this module registered no handler: call capsule.SetHandle(...) in main"))
	}
	return fromHandler(handleFunction(in))
}

func runHandleJSON(in []byte) (result uint64) {
	defer guard(&result)
	if handleJSONFunction == nil {
		return Failure([]byte("this module registered no JSON handler: call capsule.SetHandleJSON(...) in main"))
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(in)
	if err != nil {
		return Failure([]byte("the input is not valid JSON: " + err.Error()))
	}
	return fromHandler(handleJSONFunction(v))
}

func runHandleHTTP(in []byte) (result uint64) {
	defer guard(&result)
	if handleHTTPFunction == nil {
		return Failure([]byte("this module registered no HTTP handler: call capsule.SetHandleHTTP(...) in main"))
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(in)
	if err != nil {
		return Failure([]byte("the HTTP request is not valid JSON: " + err.Error()))
	}
	response, err := handleHTTPFunction(HTTPRequest{
		Body:     string(v.GetStringBytes("Body")),
		JSONBody: string(v.GetStringBytes("JSONBody")),
		TextBody: string(v.GetStringBytes("TextBody")),
		URI:      string(v.GetStringBytes("URI")),
		Method:   string(v.GetStringBytes("Method")),
		Headers:  string(v.GetStringBytes("Headers")),
	})
	if err != nil {
		return Failure([]byte(err.Error()))
	}
	if problem := checkResponse(response); problem != "" {
		return Failure([]byte(problem))
	}
	return Success([]byte(StringifyHTTPResponse(response)))
}

func runHandleMessage(in []byte) (result uint64) {
	defer guard(&result)
	if handleMessageFunction == nil {
		return Failure([]byte("this module registered no message handler: call capsule.SetHandleMessage(...) in main"))
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(in)
	if err != nil {
		return Failure([]byte("the message is not valid JSON: " + err.Error()))
	}
	data, err := base64.StdEncoding.DecodeString(string(v.GetStringBytes("Data")))
	if err != nil {
		return Failure([]byte("the message Data is not base64: " + err.Error()))
	}
	msg := Message{
		Subject: string(v.GetStringBytes("Subject")),
		Topic:   string(v.GetStringBytes("Topic")),
		Data:    data,
		Headers: map[string]string{},
		ReplyTo: string(v.GetStringBytes("ReplyTo")),
	}
	if o := v.GetObject("Headers"); o != nil {
		o.Visit(func(k []byte, v *fastjson.Value) { msg.Headers[string(k)] = stringOf(v) })
	}
	return fromHandler(handleMessageFunction(msg))
}
