/* A hostile job's tool: swap two paths atomically, again and again, for SECONDS seconds.
 *
 *   swapper A B SECONDS
 *
 * renameat2(RENAME_EXCHANGE) exchanges a real folder and a symlink under the same name, so a reader that checks a
 * path and then opens it by name again can be sent anywhere the link points. Built static by
 * scripts/build-images.sh into opeva-test/hostile (tests/e2e/test_attacks.py). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: swapper A B SECONDS\n");
        return 2;
    }
    time_t end = time(NULL) + atoi(argv[3]);
    unsigned long swaps = 0;
    while (time(NULL) < end) {
        for (int i = 0; i < 1000; i++) {
            if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE) != 0) {
                perror("renameat2");
                return 1;
            }
            swaps++;
        }
    }
    printf("swapper: %lu swaps\n", swaps);
    return 0;
}
