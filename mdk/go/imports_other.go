//go:build !wasip1

package capsule

import (
	"os"
	"unsafe"
)

// Outside a wasip1 build (go vet, go test of handler code on the developer's machine) the host
// functions are stand-ins: Print and Log write to stdout and stderr, the others fail with a
// message saying they need Capsule.

func hostPrintString(p0 unsafe.Pointer, n0 uint32) uint32 {
	return standIn(1, p0, n0)
}

func hostLogString(p0 unsafe.Pointer, n0 uint32) uint32 {
	return standIn(2, p0, n0)
}

func hostGetEnv(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	name := ""
	if n0 > 0 {
		name = string(unsafe.Slice((*byte)(p0), n0))
	}
	return standInResult([]byte(os.Getenv(name)), retPtr, retLen)
}

func hostTalk(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostTalk", retPtr, retLen)
}

func hostReadFile(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostReadFile", retPtr, retLen)
}

func hostWriteFile(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostWriteFile", retPtr, retLen)
}

func hostHTTP(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostHTTP", retPtr, retLen)
}

func hostCacheSet(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostCacheSet", retPtr, retLen)
}

func hostCacheGet(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostCacheGet", retPtr, retLen)
}

func hostCacheDel(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostCacheDel", retPtr, retLen)
}

func hostCacheKeys(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostCacheKeys", retPtr, retLen)
}

func hostRedisSet(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostRedisSet", retPtr, retLen)
}

func hostRedisGet(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostRedisGet", retPtr, retLen)
}

func hostRedisDel(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostRedisDel", retPtr, retLen)
}

func hostRedisKeys(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostRedisKeys", retPtr, retLen)
}

func hostCouchBaseQuery(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostCouchBaseQuery", retPtr, retLen)
}

func hostKvIncrement(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostKvIncrement", retPtr, retLen)
}

func hostNatsPublish(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostNatsPublish", retPtr, retLen)
}

func hostNatsRequest(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, timeoutMs uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostNatsRequest", retPtr, retLen)
}

func hostMqttPublish(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32 {
	return standInFailure("hostMqttPublish", retPtr, retLen)
}

// standIn writes a Print / Log message to fd 1 / 2 of the developer's machine.
func standIn(fd int, p unsafe.Pointer, n uint32) uint32 {
	text := ""
	if n > 0 {
		text = string(unsafe.Slice((*byte)(p), n))
	}
	if fd == 1 {
		os.Stdout.WriteString(text + "\n")
	} else {
		os.Stderr.WriteString(text + "\n")
	}
	return 0
}

// standInFailure returns `F<name>: … only available …` through the return slots.
func standInFailure(name string, retPtr, retLen *uint32) uint32 {
	return standInResult([]byte("F"+name+": host functions are only available in a GOOS=wasip1 build run by Capsule"), retPtr, retLen)
}

// standInResult hands result to takeResult under a small made-up address.
func standInResult(result []byte, retPtr, retLen *uint32) uint32 {
	if len(result) == 0 {
		*retPtr, *retLen = 0, 0
		return 0
	}
	id := uint32(1)
	for pending[uintptr(id)] != nil {
		id++
	}
	pending[uintptr(id)] = result
	*retPtr, *retLen = id, uint32(len(result))
	return 0
}
