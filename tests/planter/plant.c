/* What a compromised node can do in its own data volume, run inside its container as its uid:
 *
 *   plant link TARGET PATH   a symbolic link (TARGET need not exist inside the container)
 *   plant fifo PATH          a FIFO
 *   plant rm PATH            remove an entry
 *
 * Several operations may follow one another on one command line. Exit 1 at the first that fails.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int i = 1;
    while (i < argc) {
        int rc;
        if (!strcmp(argv[i], "link") && i + 2 < argc) {
            rc = symlink(argv[i + 1], argv[i + 2]);
            i += 3;
        } else if (!strcmp(argv[i], "fifo") && i + 1 < argc) {
            rc = mkfifo(argv[i + 1], 0644);
            i += 2;
        } else if (!strcmp(argv[i], "rm") && i + 1 < argc) {
            rc = unlink(argv[i + 1]);
            if (rc < 0 && errno == ENOENT)
                rc = 0;
            i += 2;
        } else {
            fprintf(stderr, "plant: bad arguments at %s\n", argv[i]);
            return 2;
        }
        if (rc < 0) {
            fprintf(stderr, "plant: %s: %s\n", argv[i - 1], strerror(errno));
            return 1;
        }
    }
    printf("uid=%d\n", (int)getuid());
    return 0;
}
