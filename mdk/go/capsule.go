// Package capsule is the Go MDK of Capsule: write Capsule functions (Capsule ABI generation 2,
// capsule-abi.md §5 and the §8 extensions) in Go and build them with the standard Go toolchain
// (Go ≥ 1.24) as WASI reactors:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o hello.wasm .
//
// It keeps the package name, function names, signatures and types of the TinyGo-era
// github.com/bots-garden/capsule-module-sdk, so that a function written for it builds by changing
// its import path only. See README.md for what differs (hooks are exported with
// //go:wasmexport, what an exported call may not do) and one example per handler kind.
package capsule

import (
	"errors"
	"unsafe"
)

const isFailure = 'F'
const isSuccess = 'S'

// lastResult keeps the frame the last export returned alive until the next one: the host copies
// it after the export returned (capsule-abi.md §2.3).
var lastResult []byte

// frame returns the result of an export: ptr << 32 | len of `kind` followed by data.
func frame(kind byte, data []byte) uint64 {
	buf := make([]byte, 1+len(data))
	buf[0] = kind
	copy(buf[1:], data)
	lastResult = buf
	return copyBufferToMemory(buf)
}

// Success returns data framed as a success (`S<data>`, capsule-abi.md §5.1) in the form an export
// returns: the buffer's address << 32 | its length. Use it in OnHealthCheck / OnMetrics with
// StringifyHTTPResponse.
func Success(buffer []byte) uint64 {
	return frame(isSuccess, buffer)
}

// Failure returns buffer framed as a failure (`F<buffer>`) in the form an export returns.
func Failure(buffer []byte) uint64 {
	return frame(isFailure, buffer)
}

// Result splits a frame a host function returned: the payload of `S<payload>`, or an error with
// the text of `F<text>`. An empty frame (no result at all) is an empty success.
func Result(data []byte) ([]byte, error) {
	if len(data) == 0 {
		return []byte{}, nil
	}
	switch data[0] {
	case isSuccess:
		return data[1:], nil
	case isFailure:
		return nil, errors.New(string(data[1:]))
	}
	return nil, errors.New("the host returned an unframed result: " + string(data))
}

// CopyBufferToMemory returns the address of buffer << 32 | its length, the form of an export
// result (capsule-abi.md §2.3). The caller keeps buffer alive until the host has read it.
func CopyBufferToMemory(buffer []byte) uint64 {
	return copyBufferToMemory(buffer)
}

func copyBufferToMemory(buffer []byte) uint64 {
	if len(buffer) == 0 {
		return 0
	}
	ptr := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buffer))))
	return uint64(ptr)<<32 | uint64(uint32(len(buffer)))
}

// ReadBufferFromMemory copies length bytes of linear memory from bufferPosition.
func ReadBufferFromMemory(bufferPosition *uint32, length uint32) []byte {
	if bufferPosition == nil || length == 0 {
		return []byte{}
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(bufferPosition)), length)...)
}
