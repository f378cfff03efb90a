package capsule

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"
)

// The host functions as Go functions (capsule-abi.md §5.7, §8). Each passes its arguments as
// (address, length) pairs and reads the result the host wrote through allocateBuffer.

type hostFn1 = func(unsafe.Pointer, uint32, *uint32, *uint32) uint32
type hostFn2 = func(unsafe.Pointer, uint32, unsafe.Pointer, uint32, *uint32, *uint32) uint32

func call1(f hostFn1, a string) []byte {
	var ptr, size uint32
	ap, an := stringPtr(a)
	f(ap, an, &ptr, &size)
	return takeResult(ptr, size)
}

func call2(f hostFn2, a string, b []byte) []byte {
	var ptr, size uint32
	ap, an := stringPtr(a)
	bp, bn := bytesPtr(b)
	f(ap, an, bp, bn, &ptr, &size)
	return takeResult(ptr, size)
}

// Print writes message and a newline to the function's standard output (hostPrintString): the
// terminal for `capsule run`, the request's log lines for the servers.
func Print(message string) {
	p, n := stringPtr(message)
	hostPrintString(p, n)
}

// Log writes message as one line of the function's log (hostLogString).
func Log(message string) {
	p, n := stringPtr(message)
	hostLogString(p, n)
}

// GetEnv returns the value of the environment variable variableName as the runner passes it to
// the function (--env, --env-file, config env), "" when it is not set (hostGetEnv).
func GetEnv(variableName string) string {
	return string(call1(hostGetEnv, variableName))
}

// Talk sends a message to the host and returns its answer (hostTalk, a demo function).
func Talk(bufferMessageToHost []byte) []byte {
	return call1(hostTalk, string(bufferMessageToHost))
}

// ReadFile returns the content of a file in a directory granted with --dir (hostReadFile).
func ReadFile(filePath string) ([]byte, error) {
	return Result(call1(hostReadFile, filePath))
}

// WriteFile creates or replaces a file (mode 0644) in a directory granted with --dir
// (hostWriteFile).
func WriteFile(filePath string, content []byte) error {
	_, err := Result(call2(hostWriteFile, filePath, content))
	return err
}

// CacheSet stores value under key in the memory cache of the runner process (hostCacheSet) and
// returns the key.
func CacheSet(key string, value []byte) []byte {
	data, _ := Result(call2(hostCacheSet, key, value))
	return data
}

// CacheGet returns the value stored under key in the memory cache, or the error "key not found"
// (hostCacheGet).
func CacheGet(key string) ([]byte, error) {
	return Result(call1(hostCacheGet, key))
}

// CacheDel removes key from the memory cache and returns it (hostCacheDel).
func CacheDel(key string) []byte {
	data, _ := Result(call1(hostCacheDel, key))
	return data
}

// CacheKeys returns the keys of the memory cache that match filter, a glob (`*`, `?`)
// (hostCacheKeys).
func CacheKeys(filter string) ([]string, error) {
	return keysOf(call1(hostCacheKeys, filter))
}

// RedisSet stores value under key in Redis and returns the key (hostRedisSet).
func RedisSet(key string, value []byte) ([]byte, error) {
	return Result(call2(hostRedisSet, key, value))
}

// RedisGet returns the value of key in Redis; a missing key is the error "redis: nil"
// (hostRedisGet).
func RedisGet(key string) ([]byte, error) {
	return Result(call1(hostRedisGet, key))
}

// RedisDel deletes key in Redis and returns it (hostRedisDel).
func RedisDel(key string) ([]byte, error) {
	return Result(call1(hostRedisDel, key))
}

// RedisKeys returns the Redis keys that match filter, a Redis KEYS pattern (hostRedisKeys).
func RedisKeys(filter string) ([]string, error) {
	return keysOf(call1(hostRedisKeys, filter))
}

// keysOf reads a `S{"keys":[…]}` result.
func keysOf(frame []byte) ([]string, error) {
	data, err := Result(frame)
	if err != nil {
		return nil, err
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(data)
	if err != nil {
		return nil, err
	}
	keys := []string{}
	for _, key := range v.GetArray("keys") {
		keys = append(keys, string(key.GetStringBytes()))
	}
	return keys, nil
}

// CouchBaseQuery runs a N1QL query on the configured CouchBase bucket and returns the rows as a
// JSON array (hostCouchBaseQuery).
func CouchBaseQuery(query string) ([]byte, error) {
	return Result(call1(hostCouchBaseQuery, query))
}

// KvIncrement adds delta to the integer stored at key in the function's KV store (the memory
// cache, or Redis INCRBY with --kv=redis), atomically across workers, and returns the new value;
// a missing key counts as 0 (hostKvIncrement, a Capsule extension).
func KvIncrement(key string, delta int64) (int64, error) {
	data, err := Result(call2(hostKvIncrement, key, []byte(strconv.FormatInt(delta, 10))))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(data), 10, 64)
}

// NatsPublish publishes data on a NATS subject through the connection of `capsule nats`
// (hostNatsPublish, a Capsule extension).
func NatsPublish(subject string, data []byte) error {
	_, err := Result(call2(hostNatsPublish, subject, data))
	return err
}

// NatsRequest sends data on a NATS subject and returns the reply, or the error "timeout" after
// timeout (hostNatsRequest, a Capsule extension).
func NatsRequest(subject string, data []byte, timeout time.Duration) ([]byte, error) {
	var ptr, size uint32
	ap, an := stringPtr(subject)
	bp, bn := bytesPtr(data)
	hostNatsRequest(ap, an, bp, bn, uint32(min(max(timeout.Milliseconds(), 0), 1<<31)), &ptr, &size)
	return Result(takeResult(ptr, size))
}

// MqttPublish publishes data on an MQTT topic through the client of `capsule mqtt`
// (hostMqttPublish, a Capsule extension).
func MqttPublish(topic string, data []byte) error {
	_, err := Result(call2(hostMqttPublish, topic, data))
	return err
}

// HTTP sends an HTTP request through the host (hostHTTP; the host must be allowed with
// --allowed-hosts). JSONBody (raw JSON text) is sent when set, else TextBody. The response's
// JSONBody is the raw JSON text of a JSON answer, TextBody the text of any other, Headers a JSON
// object of arrays of strings.
func HTTP(request HTTPRequest) (HTTPResponse, error) {
	out := []byte(`{"JSONBody":`)
	if body := strings.TrimSpace(request.JSONBody); body != "" {
		if err := fastjson.Validate(body); err != nil {
			return HTTPResponse{}, errors.New("the request JSONBody is not valid JSON: " + err.Error())
		}
		out = append(out, body...)
	} else {
		out = append(out, "{}"...)
	}
	out = append(out, `,"TextBody":`...)
	out = appendJSONString(out, request.TextBody)
	out = append(out, `,"URI":`...)
	out = appendJSONString(out, request.URI)
	out = append(out, `,"Method":`...)
	out = appendJSONString(out, request.Method)
	out = append(out, `,"Headers":`...)
	if headers := strings.TrimSpace(request.Headers); headers != "" {
		if err := fastjson.Validate(headers); err != nil {
			return HTTPResponse{}, errors.New("the request Headers are not a JSON object: " + err.Error())
		}
		out = append(out, headers...)
	} else {
		out = append(out, "{}"...)
	}
	out = append(out, '}')
	data, err := Result(call1(hostHTTP, string(out)))
	if err != nil {
		return HTTPResponse{}, err
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(data)
	if err != nil {
		return HTTPResponse{}, err
	}
	response := HTTPResponse{StatusCode: v.GetInt("StatusCode")}
	if body := v.Get("JSONBody"); body != nil {
		response.JSONBody = body.String()
	}
	response.TextBody = string(v.GetStringBytes("TextBody"))
	if headers := v.Get("Headers"); headers != nil {
		response.Headers = headers.String()
	}
	return response, nil
}
