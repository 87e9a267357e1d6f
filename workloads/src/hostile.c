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
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
    if (!strcmp(mode, "sysctl") && argc == 4) {
        /* A write that reaches the kernel: fopen alone succeeds even where the write is refused. */
        int fd = open(argv[2], O_WRONLY);
        if (fd < 0 || write(fd, argv[3], strlen(argv[3])) < 0) {
            printf("blocked sysctl %s: %s\n", argv[2], strerror(errno));
            return 0;
        }
        printf("ESCAPED sysctl %s\n", argv[2]);
        return 0;
    }
    if (!strcmp(mode, "chmod") && argc == 4) {
        if (chmod(argv[2], (mode_t)strtol(argv[3], NULL, 8)) < 0) {
            printf("blocked chmod %s: %s\n", argv[2], strerror(errno));
            return 0;
        }
        printf("ESCAPED chmod %s\n", argv[2]);
        return 0;
    }
    if (!strcmp(mode, "open")) {
        for (int i = 2; i < argc; i++) {
            int fd = open(argv[i], O_RDONLY);
            if (fd < 0) {
                printf("blocked open %s: %s\n", argv[i], strerror(errno));
                continue;
            }
            char buffer[4096];
            ssize_t n = read(fd, buffer, sizeof buffer);
            printf("opened %s: %zd bytes\n", argv[i], n);
            close(fd);
        }
        return 0;
    }
    if (!strcmp(mode, "cat") && argc == 3) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) {
            printf("blocked cat %s: %s\n", argv[2], strerror(errno));
            return 0;
        }
        char buffer[4096];
        ssize_t n;
        while ((n = read(fd, buffer, sizeof buffer)) > 0) fwrite(buffer, 1, (size_t)n, stdout);
        return 0;
    }
    if (!strcmp(mode, "fds")) {
        DIR *dir = opendir("/proc/self/fd");
        struct dirent *entry;
        while (dir && (entry = readdir(dir))) {
            char path[300], target[256];
            if (entry->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "/proc/self/fd/%s", entry->d_name);
            ssize_t n = readlink(path, target, sizeof target - 1);
            target[n < 0 ? 0 : n] = 0;
            printf("fd %s -> %s\n", entry->d_name, target);
        }
        return 0;
    }
    if ((!strcmp(mode, "fill") && argc == 4) || (!strcmp(mode, "leak") && argc == 3)) {
        /* leak: what a workload might do with its secret (stderr), then fill memory via tmpfs. */
        if (!strcmp(mode, "leak")) {
            char buffer[4096];
            ssize_t n;
            while ((n = read(0, buffer, sizeof buffer)) > 0) write(2, buffer, (size_t)n);
        }
        long limit_kib = argc == 4 ? strtol(argv[3], NULL, 10) * 1024 : -1;
        static char chunk[64 * 1024];
        memset(chunk, 'f', sizeof chunk);
        FILE *f = fopen(argv[2], "w");
        if (!f) {
            printf("blocked fill %s: %s\n", argv[2], strerror(errno));
            return 0;
        }
        setvbuf(f, NULL, _IONBF, 0);
        long kib = 0;
        while (limit_kib < 0 || kib < limit_kib) {
            if (fwrite(chunk, 1, sizeof chunk, f) != sizeof chunk) break;
            kib += sizeof chunk / 1024;
        }
        printf("filled %s with %ld KiB%s%s\n", argv[2], kib, ferror(f) ? ": " : "",
               ferror(f) ? strerror(errno) : "");
        return 0;
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
