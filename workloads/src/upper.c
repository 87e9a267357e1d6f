/* Copies stdin to stdout in upper case: the round-trip workload of the tests. */
#include <ctype.h>
#include <stdio.h>

int main(void) {
    static char buffer[1 << 16];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, stdin)) > 0) {
        for (size_t i = 0; i < n; i++) buffer[i] = (char)toupper((unsigned char)buffer[i]);
        if (fwrite(buffer, 1, n, stdout) != n) return 1;
    }
    return 0;
}
