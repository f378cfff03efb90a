package capsule

import "unsafe"

// Buffers the host writes into: Go's garbage collector does not move objects, but it frees what
// nothing references, so every buffer handed to the host is kept in one of these maps until the
// guest takes it back.
var (
	// allocated by `malloc` for the host's arguments (capsule-abi.md §2.3), until `free`.
	allocated = map[uintptr][]byte{}
	// allocated by `allocateBuffer` for a host function's result (§2.4), until takeResult.
	pending = map[uintptr][]byte{}
)

// alloc returns a new zeroed buffer of size bytes (at least 1, so that it has an address),
// remembered in pins under its address.
func alloc(pins map[uintptr][]byte, size uint32) unsafe.Pointer {
	buf := make([]byte, max(size, 1))
	ptr := unsafe.Pointer(unsafe.SliceData(buf))
	pins[uintptr(ptr)] = buf
	return ptr
}

// input returns the size bytes the host passed at ptr: the malloc'd buffer itself (no copy; the
// host's later `free` only unpins it, so a handler may keep it), or a copy when the host wrote
// elsewhere.
func input(ptr unsafe.Pointer, size uint32) []byte {
	if size == 0 {
		return []byte{}
	}
	if buf, ok := allocated[uintptr(ptr)]; ok && uint32(len(buf)) >= size {
		return buf[:size:size]
	}
	return append([]byte(nil), unsafe.Slice((*byte)(ptr), size)...)
}

// takeResult returns the size bytes a host function wrote at ptr through the return-buffer
// protocol (capsule-abi.md §2.4) and unpins them; ptr 0 / size 0 is an empty result.
func takeResult(ptr, size uint32) []byte {
	if size == 0 {
		return []byte{}
	}
	if buf, ok := pending[uintptr(ptr)]; ok {
		delete(pending, uintptr(ptr))
		return buf[:size:size]
	}
	// linear memory address 0 is where the host's address counts from
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(nil), ptr)), size)...)
}

// bytesPtr is the address and length of b for a host function argument (0, 0 when empty).
func bytesPtr(b []byte) (unsafe.Pointer, uint32) {
	if len(b) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))
}

// stringPtr is the address and length of s for a host function argument (0, 0 when empty).
func stringPtr(s string) (unsafe.Pointer, uint32) {
	if len(s) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}
