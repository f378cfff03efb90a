//go:build wasip1

package capsule

import (
	"runtime"
	"unsafe"
)

// The exports a Capsule host calls (capsule-abi.md §2.1, §5.2, §8). The module is a WASI reactor
// (-buildmode=c-shared): the host calls `_initialize` (the Go runtime and every package's init),
// then these. Hooks (OnStart, OnStop, OnHealthCheck, OnMetrics) are the module's own exports.

//go:wasmexport malloc
func exportMalloc(size uint32) unsafe.Pointer {
	return alloc(allocated, size)
}

//go:wasmexport free
func exportFree(ptr unsafe.Pointer) {
	delete(allocated, uintptr(ptr))
}

//go:wasmexport allocateBuffer
func exportAllocateBuffer(size uint32) unsafe.Pointer {
	return alloc(pending, size)
}

//go:wasmexport callHandle
func exportCallHandle(ptr unsafe.Pointer, size uint32) uint64 {
	runMain()
	return runHandle(input(ptr, size))
}

//go:wasmexport callHandleJSON
func exportCallHandleJSON(ptr unsafe.Pointer, size uint32) uint64 {
	runMain()
	return runHandleJSON(input(ptr, size))
}

//go:wasmexport callHandleHTTP
func exportCallHandleHTTP(ptr unsafe.Pointer, size uint32) uint64 {
	runMain()
	return runHandleHTTP(input(ptr, size))
}

//go:wasmexport callHandleMessage
func exportCallHandleMessage(ptr unsafe.Pointer, size uint32) uint64 {
	runMain()
	return runHandleMessage(input(ptr, size))
}

// A c-shared Go module runs its package initialisers in `_initialize` but never its `main`, where
// TinyGo-era functions register their handler. The first handler call therefore runs main.main,
// in a goroutine: main may return (the usual case) or block for ever after registering (some
// TinyGo samples end with `select {}` or a channel receive), and either lets the call go on.

//go:linkname mainMain main.main
func mainMain()

var mainStarted bool

func runMain() {
	if mainStarted {
		return
	}
	mainStarted = true
	done := false
	go func() {
		mainMain()
		done = true
	}()
	for !done && !registered() {
		runtime.Gosched()
	}
}
