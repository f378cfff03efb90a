// cenv: a plain WASI command that dumps what it was given, like seed 003's goenv/rustenv/watenv.
// No SDK: served CGI-style, its standard output is the HTTP response (wasi-cgi.md §6).
//   capsule serve --functions=./functions   (with cenv.wasm in ./functions)
//   curl 'localhost:8080/cenv/some/path?b=2&a=1'
#include <stdio.h>

extern char **environ;

int main(int argc, char **argv) {
  printf("Content-Type: text/plain; charset=utf-8\n\n");
  printf("Hello from C (WASI)\n\nargv:\n");
  for (int i = 0; i < argc; i++) printf("  %s\n", argv[i]);
  printf("\nenvironment:\n");
  for (char **e = environ; *e; e++) printf("  %s\n", *e);
  return 0;
}
