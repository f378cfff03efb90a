// build: -mexec-model=reactor
/*
 * file-reader-c: returns the content of the file named by the parameter (hostReadFile through
 * capsule_read_file). Only granted directories are readable:
 *   capsule run file-reader-c.wasm --dir=examples/file-reader/data:/data:ro /data/hello.txt
 */
#include "capsule.h"

static capsule_result handle(const char *path, size_t len) {
  if (len == 0) return capsule_fail("give me a path, e.g. /data/hello.txt");
  return capsule_read_file(path); /* the host's S/F frame, passed through */
}

__attribute__((constructor)) static void init(void) { capsule_set_handle(handle); }
