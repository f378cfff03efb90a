package capsule

import "runtime"

// heapRoom is how much free, already-mapped heap a module has when its initialisation ends.
const heapRoom = 512 << 10

var warmup []byte

// init leaves heapRoom bytes of free heap behind: it allocates them, drops them and collects.
//
// Why: a fresh call of a module is served by putting one initialised instance back into its
// post-initialisation state, which cannot undo a growth of linear memory (memories do not
// shrink), so a call that grows memory costs a new instance. Go's heap grows memory by what it
// needs, and where an initialisation leaves it depends on its environment: without free room the
// first allocations of almost every call grow memory. With it, a call that allocates less than
// about heapRoom keeps the reset. The collection sleeps in poll_oneoff (a clock subscription),
// which the snapshot allows (src/engine/snapshot.ts).
func init() {
	warmup = make([]byte, heapRoom)
	warmup[heapRoom-1] = 1
	warmup = nil
	runtime.GC()
}
