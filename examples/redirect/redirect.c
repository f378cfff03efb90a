// redirect: a plain WASI command answering with a CGI redirect (wasi-cgi.md §6): a `Status` line
// and a `Location` header, no body. `?to=<url>` picks the target (default /hello), `?permanent`
// answers 301 instead of 302.
//   curl -i 'localhost:8080/redirect?to=https://example.com/'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Decodes %XX and + in place.
static void unescape(char *s) {
  char *o = s;
  for (; *s; s++) {
    if (*s == '+') *o++ = ' ';
    else if (*s == '%' && s[1] && s[2]) {
      char hex[3] = {s[1], s[2], 0};
      *o++ = (char)strtol(hex, NULL, 16);
      s += 2;
    } else *o++ = *s;
  }
  *o = 0;
}

int main(void) {
  const char *q = getenv("QUERY_STRING");
  static char query[4096];
  strncpy(query, q ? q : "", sizeof query - 1);
  const char *to = "/hello";
  int permanent = 0;
  for (char *item = strtok(query, "&"); item; item = strtok(NULL, "&")) {
    if (strncmp(item, "to=", 3) == 0 && item[3]) {
      unescape(item + 3);
      to = item + 3;
    } else if (strcmp(item, "permanent") == 0) {
      permanent = 1;
    }
  }
  if (strpbrk(to, "\r\n")) {  // never let a header be injected
    printf("Status: 400 Bad Request\nContent-Type: text/plain\n\nbad target\n");
    return 0;
  }
  printf("Status: %s\nLocation: %s\n\n", permanent ? "301 Moved Permanently" : "302 Found", to);
  return 0;
}
