//go:build wasip1

package capsule

import "unsafe"

// Host functions of module `env` (capsule-abi.md §5.7 and the §8 extensions). Every one is
// declared -> i32 (always 0); strings are (address, length) pairs; results come back through
// the two u32 slots retPtr/retLen (the return-buffer protocol, §2.4).

//go:wasmimport env hostPrintString
func hostPrintString(p0 unsafe.Pointer, n0 uint32) uint32

//go:wasmimport env hostLogString
func hostLogString(p0 unsafe.Pointer, n0 uint32) uint32

//go:wasmimport env hostGetEnv
func hostGetEnv(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostTalk
func hostTalk(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostReadFile
func hostReadFile(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostWriteFile
func hostWriteFile(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostHTTP
func hostHTTP(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostCacheSet
func hostCacheSet(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostCacheGet
func hostCacheGet(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostCacheDel
func hostCacheDel(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostCacheKeys
func hostCacheKeys(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostRedisSet
func hostRedisSet(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostRedisGet
func hostRedisGet(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostRedisDel
func hostRedisDel(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostRedisKeys
func hostRedisKeys(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostCouchBaseQuery
func hostCouchBaseQuery(p0 unsafe.Pointer, n0 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostKvIncrement
func hostKvIncrement(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostNatsPublish
func hostNatsPublish(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostNatsRequest
func hostNatsRequest(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, timeoutMs uint32, retPtr, retLen *uint32) uint32

//go:wasmimport env hostMqttPublish
func hostMqttPublish(p0 unsafe.Pointer, n0 uint32, p1 unsafe.Pointer, n1 uint32, retPtr, retLen *uint32) uint32
