/* One program, many misbehaviours, picked by argv[1]; each limit test runs one of them.
 * Escape attempts print "ESCAPED ..." when they succeed and "blocked ..." when they fail, so a
 * test reads the verdict from the (sealed) output. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef __wasi__
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#endif

/* Allocations escape through this, or the compiler drops the unused malloc + memset. */
static char *volatile kept;

static int try_write(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        printf("blocked write %s: %s\n", path, strerror(errno));
        return 0;
    }
    fputs("escaped\n", f);
    fclose(f);
    printf("ESCAPED write %s\n", path);
    return 1;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "loop")) {
        volatile unsigned long spin = 0;
        for (;;) spin++;
    }
    if (!strcmp(mode, "trap")) __builtin_trap();
    if (!strcmp(mode, "memory")) {
        for (size_t total = 0;; total += 1 << 20) {
            char *p = malloc(1 << 20);
            if (!p) {
                fprintf(stderr, "allocation failed after %zu MiB\n", total >> 20);
                return 3;
            }
            memset(p, 1, 1 << 20);
            kept = p;
        }
    }
    if (!strcmp(mode, "output")) {
        static char line[4096];
        memset(line, 'x', sizeof line);
        for (;;)
            if (fwrite(line, 1, sizeof line, stdout) != sizeof line) return 4;
    }
    if (!strcmp(mode, "shadow")) {
        int fd = open("/etc/shadow", O_RDONLY);
        if (fd < 0) {
            printf("blocked read /etc/shadow: %s\n", strerror(errno));
            return 0;
        }
        printf("ESCAPED read /etc/shadow\n");
        return 0;
    }
    if (!strcmp(mode, "write")) {
        int escaped = 0;
        for (int i = 2; i < argc; i++) escaped |= try_write(argv[i]);
        return escaped;
    }
#ifndef __wasi__
    if (!strcmp(mode, "fork")) {
        for (int children = 0;; children++) {
            pid_t pid = fork();
            if (pid < 0) {
                fprintf(stderr, "fork refused after %d children: %s\n", children, strerror(errno));
                return 5;
            }
            if (pid == 0)
                for (;;) pause();
        }
    }
    if (!strcmp(mode, "socket")) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            printf("blocked socket AF_INET: %s\n", strerror(errno));
            int unix_fd = socket(AF_UNIX, SOCK_STREAM, 0);
            printf("%s socket AF_UNIX%s%s\n", unix_fd < 0 ? "blocked" : "ESCAPED",
                   unix_fd < 0 ? ": " : "", unix_fd < 0 ? strerror(errno) : "");
            return 0;
        }
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(9)};
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0 && errno != ECONNREFUSED) {
            printf("blocked connect: %s\n", strerror(errno));
            return 0;
        }
        printf("ESCAPED network reachable\n");
        return 0;
    }
#endif
    fprintf(stderr, "unknown mode %s\n", mode);
    return 64;
}
