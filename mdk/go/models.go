package capsule

import (
	"encoding/base64"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// HTTPRequest is an HTTP request: the one a SetHandleHTTP handler receives (capsule-abi.md §5.3),
// or the one HTTP sends (§5.7).
type HTTPRequest struct {
	// Body is the raw request body (handler side).
	Body string
	// JSONBody is raw JSON text: the body HTTP sends (handler side: always empty).
	JSONBody string
	// TextBody is the text body HTTP sends when JSONBody is empty (handler side: always empty).
	TextBody string
	// URI is the full URL: http[s]://host/path?query.
	URI string
	// Method is the upper-case method.
	Method string
	// Headers: handler side, the host's `"Name":"value",…` string (read it with GetHeaders);
	// HTTP side, a JSON object of strings (`{"Name":"value"}`, see SetHeaders), empty = none.
	Headers string
}

// HTTPResponse is an HTTP response: the one a SetHandleHTTP handler, OnHealthCheck or
// OnMetrics returns (capsule-abi.md §5.4), or the one HTTP received (§5.7).
type HTTPResponse struct {
	// JSONBody is raw JSON text sent as the body (ignored when TextBody is set). It must be valid
	// JSON: otherwise the call fails.
	JSONBody string
	// TextBody is a text (or binary) body; it wins over JSONBody.
	TextBody string
	// Headers is a JSON object of strings, e.g. `{"Content-Type": "text/html; charset=utf-8"}`
	// (see SetHeaders); empty = none. HTTP side: the response headers as the host sent them, a
	// JSON object of arrays of strings.
	Headers string
	// StatusCode is the HTTP status; 0 = 200.
	StatusCode int
}

// Message is a NATS or MQTT message delivered to a SetHandleMessage handler (capsule-abi.md §8).
type Message struct {
	// Subject is the NATS subject (empty for MQTT).
	Subject string
	// Topic is the MQTT topic (empty for NATS).
	Topic string
	// Data is the payload.
	Data []byte
	// Headers are the NATS headers / MQTT v5 user properties.
	Headers map[string]string
	// ReplyTo is where the handler's result is published (reply subject or response topic);
	// empty when nobody waits for an answer.
	ReplyTo string
}

// GetHeaders returns the headers of a request's Headers string as a map (name → value). It reads
// the host's `"Name":"value",…` form (with or without braces) as JSON, so quotes and commas in
// values survive; text that is not JSON is split the TinyGo MDK's way (on `,` then `:`).
func GetHeaders(headers string) map[string]string {
	text := strings.TrimSpace(headers)
	if !strings.HasPrefix(text, "{") {
		text = "{" + text + "}"
	}
	var p fastjson.Parser
	if v, err := p.Parse(text); err == nil {
		if o, err := v.Object(); err == nil {
			out := make(map[string]string, o.Len())
			o.Visit(func(k []byte, v *fastjson.Value) {
				out[string(k)] = stringOf(v)
			})
			return out
		}
	}
	out := map[string]string{}
	for _, item := range strings.Split(strings.ReplaceAll(headers, `"`, ""), ",") {
		if name, value, ok := strings.Cut(item, ":"); ok {
			out[strings.TrimSpace(name)] = strings.TrimSpace(value)
		}
	}
	return out
}

// SetHeaders returns headers as the JSON object text HTTPResponse.Headers and HTTPRequest.Headers
// take, names sorted, names and values escaped.
func SetHeaders(headers map[string]string) string {
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	sort.Strings(names)
	out := []byte{'{'}
	for i, name := range names {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendJSONString(out, name)
		out = append(out, ':')
		out = appendJSONString(out, headers[name])
	}
	return string(append(out, '}'))
}

// StringifyHTTPResponse returns the response JSON of capsule-abi.md §5.4 (without its `S`):
// what OnHealthCheck and OnMetrics return through Success. TextBody is sent base64-encoded; an
// empty or invalid JSONBody, and empty or invalid Headers, are sent as `{}` (a SetHandleHTTP
// handler's invalid JSONBody or Headers fail its call instead, with a message saying so).
func StringifyHTTPResponse(response HTTPResponse) string {
	jsonBody := strings.TrimSpace(response.JSONBody)
	if jsonBody == "" || fastjson.Validate(jsonBody) != nil {
		jsonBody = "{}"
	}
	headers := strings.TrimSpace(response.Headers)
	if headers == "" || fastjson.Validate(headers) != nil {
		headers = "{}"
	}
	out := make([]byte, 0, len(jsonBody)+len(headers)+base64.StdEncoding.EncodedLen(len(response.TextBody))+64)
	out = append(out, `{"JSONBody":`...)
	out = append(out, jsonBody...)
	out = append(out, `,"TextBody":"`...)
	out = base64.StdEncoding.AppendEncode(out, []byte(response.TextBody))
	out = append(out, `","Headers":`...)
	out = append(out, headers...)
	out = append(out, `,"StatusCode":`...)
	out = strconv.AppendInt(out, int64(response.StatusCode), 10)
	return string(append(out, '}'))
}

// checkResponse says what is wrong with a handler's response, or returns "".
func checkResponse(response HTTPResponse) string {
	if body := strings.TrimSpace(response.JSONBody); body != "" && response.TextBody == "" {
		if err := fastjson.Validate(body); err != nil {
			return "the response JSONBody is not valid JSON: " + err.Error()
		}
	}
	if headers := strings.TrimSpace(response.Headers); headers != "" {
		var p fastjson.Parser
		v, err := p.Parse(headers)
		if err != nil {
			return "the response Headers are not a JSON object: " + err.Error()
		}
		if v.Type() != fastjson.TypeObject {
			return "the response Headers are not a JSON object: " + headers
		}
	}
	return ""
}

// stringOf is a JSON string's value, or the JSON text of any other value.
func stringOf(v *fastjson.Value) string {
	if v.Type() == fastjson.TypeString {
		return string(v.GetStringBytes())
	}
	return v.String()
}

// appendJSONString appends s as a JSON string literal: `"` and `\` escaped, control characters as
// \u00XX, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, "\uFFFD"...)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
		i++
	}
	return append(dst, '"')
}
