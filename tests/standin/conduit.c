/*
 * Stand-in for the Psiphon Conduit CLI, used by the integration tests.
 *
 * It behaves like the real `conduit` binary where a reconciler depends on it:
 * the `start` flags of the 1.x and 2.x CLIs (unknown flags are rejected with a
 * cobra-style error and exit 1), the identity key file in the data directory,
 * the Prometheus endpoint on --metrics-addr, `[STATS]` lines, a clean stop on
 * SIGTERM/SIGINT, `conduit-monitor` and `conduit ryve-claim`.
 *
 * It carries no client traffic. For load-balancer tests it can open plain
 * TCP/UDP listeners (STANDIN_LISTEN) whose connections count as clients.
 *
 * Environment:
 *   CONDUIT_STANDIN_VERSION  CLI version to imitate (default 2.0.0); major 1 => 1.x flags
 *   STANDIN_LISTEN           e.g. "tcp:443,udp:5566" - listeners bound on 0.0.0.0
 *   STANDIN_REGIONS          e.g. "IR=3:1000:2000,CN=2:10:20" (region=connected:up:down)
 *   STANDIN_EXIT_AFTER       exit with code 3 after N seconds (0 = right after start-up
 *                            output, before binding any socket)
 *   STANDIN_NO_METRICS=1     bind and listen on --metrics-addr but never accept: a
 *                            connect succeeds (kernel backlog) and the request never
 *                            gets an answer, so HTTP clients time out
 *
 * Build: gcc -static -O2 -o conduit conduit.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define KEY_FILE "conduit_key.json"

static const char *g_version = "2.0.0";
static int g_major = 2;
static char g_hostname[256] = "localhost";

/* ------------------------------------------------------------------ util */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(70);
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(70);
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *p = xmalloc(n + 1);
    memcpy(p, s, n + 1);
    return p;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "Error: getrandom: %s\n", strerror(errno));
            exit(1);
        }
        p += r;
        n -= (size_t)r;
    }
}

static char *b64encode(const unsigned char *in, size_t n, int urlsafe, int pad)
{
    const char *std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *t = urlsafe ? url : std;
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    size_t o = 0, i;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (in[i] << 16) | (in[i + 1] << 8) | in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = t[(v >> 6) & 63];
        out[o++] = t[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = in[i] << 16;
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        if (pad) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (n - i == 2) {
        uint32_t v = (in[i] << 16) | (in[i + 1] << 8);
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = t[(v >> 6) & 63];
        if (pad)
            out[o++] = '=';
    }
    out[o] = 0;
    return out;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static char *read_file(const char *path, int *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            *err = errno;
            close(fd);
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    return buf;
}

/* Return a malloc'd copy of the string value of "key" in a flat JSON object. */
static char *json_string_field(const char *json, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (isspace((unsigned char)*p))
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '"')
        return NULL;
    p++;
    const char *e = strchr(p, '"');
    if (!e)
        return NULL;
    char *r = xmalloc((size_t)(e - p) + 1);
    memcpy(r, p, (size_t)(e - p));
    r[e - p] = 0;
    return r;
}

static void fmt_bytes(unsigned long long b, char *out, size_t n)
{
    const char *units[] = {"KB", "MB", "GB", "TB", "PB"};
    if (b < 1024) {
        snprintf(out, n, "%llu B", b);
        return;
    }
    double v = (double)b / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, n, "%.1f %s", v, units[u]);
}

static void fmt_bandwidth(double mbps, char *out, size_t n)
{
    if (mbps < 0)
        snprintf(out, n, "unlimited");
    else
        snprintf(out, n, "%g Mbps", mbps);
}

/* ---------------------------------------------------------------- usage */

static void usage_start(FILE *f, int desc)
{
    if (desc)
        fprintf(f, "Start the Conduit inproxy service\n\n");
    fprintf(f, "Usage:\n  conduit start [flags]\n\nFlags:\n");
    if (g_major >= 2) {
        fprintf(f, "  -m, --max-common-clients int     maximum number of common clients (0-1000) (default 200)\n"
                   "      --max-personal-clients int   maximum number of personal clients (0-1000)\n"
                   "      --compartment-id string      personal compartment ID\n"
                   "      --set key=value              set a config value (repeatable)\n");
    } else {
        fprintf(f, "  -m, --max-clients int            maximum number of proxy clients (1-1000) (default 200)\n"
                   "  -s, --stats-file string[=\"stats.json\"]  persist stats to a JSON file\n"
                   "      --geo                        enable geo statistics\n");
    }
    fprintf(f, "  -b, --bandwidth float            bandwidth limit per peer in Mbps, -1 for unlimited (default 5)\n"
               "  -d, --data-dir string            directory for keys and state (default \"./data\")\n"
               "      --metrics-addr string        address for the Prometheus metrics endpoint (e.g. :9090)\n"
               "  -c, --psiphon-config string      path to a Psiphon network config file\n"
               "  -v, --verbose count              verbose output (-v, -vv)\n"
               "  -h, --help                       help for start\n");
}

static void usage_root(FILE *f)
{
    fprintf(f, "Conduit runs a Psiphon inproxy node\n\n"
               "Usage:\n  conduit [command]\n\n"
               "Available Commands:\n"
               "  start       Start the Conduit inproxy service\n"
               "  ryve-claim  Show the claim code for the Ryve app\n"
               "  help        Help about any command\n\n"
               "Flags:\n  -h, --help      help for conduit\n      --version   version for conduit\n");
}

static void start_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "Error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    usage_start(stderr, 0);
    fflush(stderr);
    exit(1);
}

/* ---------------------------------------------------------- start flags */

enum { F_MAX = 1, F_MAXP, F_BW, F_DATA, F_VERB, F_METRICS, F_CONFIG, F_COMP, F_SET, F_STATS, F_GEO, F_HELP };
enum { K_VAL, K_BOOL, K_OPT };

struct flagdef {
    int id;
    const char *lng;
    char shrt;
    int kind;
    int vers; /* bit 1: 1.x, bit 2: 2.x */
};

static const struct flagdef FLAGS[] = {
    {F_MAX, "max-common-clients", 'm', K_VAL, 2},
    {F_MAX, "max-clients", 'm', K_VAL, 1},
    {F_MAXP, "max-personal-clients", 0, K_VAL, 2},
    {F_BW, "bandwidth", 'b', K_VAL, 3},
    {F_DATA, "data-dir", 'd', K_VAL, 3},
    {F_VERB, "verbose", 'v', K_BOOL, 3},
    {F_METRICS, "metrics-addr", 0, K_VAL, 3},
    {F_CONFIG, "psiphon-config", 'c', K_VAL, 3},
    {F_COMP, "compartment-id", 0, K_VAL, 2},
    {F_SET, "set", 0, K_VAL, 2},
    {F_STATS, "stats-file", 's', K_OPT, 1},
    {F_GEO, "geo", 0, K_BOOL, 1},
    {F_HELP, "help", 'h', K_BOOL, 3},
};
#define NFLAGS (sizeof FLAGS / sizeof FLAGS[0])

static int vers_bit(void) { return g_major >= 2 ? 2 : 1; }

static const struct flagdef *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if ((FLAGS[i].vers & vers_bit()) && strlen(FLAGS[i].lng) == len && !strncmp(FLAGS[i].lng, name, len))
            return &FLAGS[i];
    return NULL;
}

static const struct flagdef *find_short(char c)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if ((FLAGS[i].vers & vers_bit()) && FLAGS[i].shrt == c)
            return &FLAGS[i];
    return NULL;
}

static void flag_display(const struct flagdef *f, char *out, size_t n)
{
    if (f->shrt)
        snprintf(out, n, "-%c, --%s", f->shrt, f->lng);
    else
        snprintf(out, n, "--%s", f->lng);
}

typedef struct {
    long max_common;
    long max_personal;
    double bandwidth;
    char *data_dir;
    int verbose;
    char *metrics_addr;
    char *psiphon_config;
    char *compartment;
    int nset;
    int stats_enabled;
    char *stats_file;
    int geo;
} opts_t;

static long parse_int_flag(const struct flagdef *f, const char *v)
{
    char *end;
    char disp[96];
    errno = 0;
    long r = strtol(v, &end, 0);
    if (!*v || *end || errno) {
        flag_display(f, disp, sizeof disp);
        start_error("invalid argument \"%s\" for \"%s\" flag: strconv.ParseInt: parsing \"%s\": invalid syntax", v, disp, v);
    }
    return r;
}

static int parse_bool(const struct flagdef *f, const char *v)
{
    char disp[96];
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "t") || !strcmp(v, "TRUE") || !strcmp(v, "True"))
        return 1;
    if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "f") || !strcmp(v, "FALSE") || !strcmp(v, "False"))
        return 0;
    flag_display(f, disp, sizeof disp);
    start_error("invalid argument \"%s\" for \"%s\" flag: strconv.ParseBool: parsing \"%s\": invalid syntax", v, disp, v);
    return 0;
}

static void apply_flag(opts_t *o, const struct flagdef *f, const char *v)
{
    char disp[96];
    switch (f->id) {
    case F_MAX:
        o->max_common = parse_int_flag(f, v);
        break;
    case F_MAXP:
        o->max_personal = parse_int_flag(f, v);
        break;
    case F_BW: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (!*v || *end || errno) {
            flag_display(f, disp, sizeof disp);
            start_error("invalid argument \"%s\" for \"%s\" flag: strconv.ParseFloat: parsing \"%s\": invalid syntax", v, disp, v);
        }
        o->bandwidth = d;
        break;
    }
    case F_DATA:
        o->data_dir = xstrdup(v);
        break;
    case F_VERB:
        if (v && parse_bool(f, v) == 0)
            o->verbose = 0;
        else
            o->verbose++;
        break;
    case F_METRICS:
        o->metrics_addr = xstrdup(v);
        break;
    case F_CONFIG:
        o->psiphon_config = xstrdup(v);
        break;
    case F_COMP:
        o->compartment = xstrdup(v);
        break;
    case F_SET: {
        const char *eq = strchr(v, '=');
        if (!eq || eq == v)
            start_error("invalid argument \"%s\" for \"--set\" flag: expected key=value", v);
        o->nset++;
        break;
    }
    case F_STATS:
        o->stats_enabled = 1;
        o->stats_file = xstrdup(v ? v : "stats.json");
        break;
    case F_GEO:
        o->geo = v ? parse_bool(f, v) : 1;
        break;
    case F_HELP:
        usage_start(stdout, 1);
        exit(0);
    }
}

static void parse_start_flags(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->max_common = 200;
    o->max_personal = 0;
    o->bandwidth = 5;
    o->data_dir = xstrdup("./data");

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            if (i + 1 < argc)
                start_error("unknown command \"%s\" for \"conduit start\"", argv[i + 1]);
            break;
        }
        if (a[0] == '-' && a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
            const struct flagdef *f = find_long(name, nlen);
            if (!f)
                start_error("unknown flag: --%.*s", (int)nlen, name);
            const char *val = NULL;
            if (f->kind == K_VAL) {
                if (eq)
                    val = eq + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else
                    start_error("flag needs an argument: --%s", f->lng);
            } else if (f->kind == K_BOOL) {
                val = eq ? eq + 1 : NULL;
            } else { /* optional value */
                if (eq)
                    val = eq + 1;
                else if (i + 1 < argc && argv[i + 1][0] != '-')
                    val = argv[++i];
            }
            apply_flag(o, f, val);
        } else if (a[0] == '-' && a[1]) {
            for (int j = 1; a[j]; j++) {
                const struct flagdef *f = find_short(a[j]);
                if (!f)
                    start_error("unknown shorthand flag: '%c' in %s", a[j], a);
                if (f->kind == K_BOOL) {
                    if (a[j + 1] == '=') {
                        apply_flag(o, f, a + j + 2);
                        break;
                    }
                    apply_flag(o, f, NULL);
                    continue;
                }
                const char *rest = a + j + 1;
                if (*rest == '=')
                    rest++;
                const char *val = NULL;
                if (*rest)
                    val = rest;
                else if (f->kind == K_VAL) {
                    if (i + 1 < argc)
                        val = argv[++i];
                    else
                        start_error("flag needs an argument: '%c' in %s", a[j], a);
                } else if (i + 1 < argc && argv[i + 1][0] != '-') {
                    val = argv[++i];
                }
                apply_flag(o, f, val);
                break;
            }
        } else {
            start_error("unknown command \"%s\" for \"conduit start\"", a);
        }
    }

    if (g_major >= 2) {
        if (o->max_common < 0 || o->max_common > 1000)
            start_error("--max-common-clients must be between 0 and 1000 (got %ld)", o->max_common);
        if (o->max_personal < 0 || o->max_personal > 1000)
            start_error("--max-personal-clients must be between 0 and 1000 (got %ld)", o->max_personal);
    } else {
        if (o->max_common < 1 || o->max_common > 1000)
            start_error("--max-clients must be between 1 and 1000 (got %ld)", o->max_common);
    }
    if (o->bandwidth != -1 && !(o->bandwidth > 0))
        start_error("--bandwidth must be a positive number of Mbps or -1 for unlimited (got %g)", o->bandwidth);
    if (o->bandwidth < 0)
        o->bandwidth = -1;
}

/* ------------------------------------------------------ data dir / key */

static const char *WORDS[128] = {
    "abandon", "ability", "able", "about", "above", "absent", "absorb", "abstract",
    "absurd", "abuse", "access", "accident", "account", "accuse", "achieve", "acid",
    "acoustic", "acquire", "across", "act", "action", "actor", "actress", "actual",
    "adapt", "add", "addict", "address", "adjust", "admit", "adult", "advance",
    "advice", "aerobic", "affair", "afford", "afraid", "again", "age", "agent",
    "agree", "ahead", "aim", "air", "airport", "aisle", "alarm", "album",
    "alcohol", "alert", "alien", "all", "alley", "allow", "almost", "alone",
    "alpha", "already", "also", "alter", "always", "amateur", "amazing", "among",
    "amount", "amused", "analyst", "anchor", "ancient", "anger", "angle", "angry",
    "animal", "ankle", "announce", "annual", "another", "answer", "antenna", "antique",
    "anxiety", "any", "apart", "apology", "appear", "apple", "approve", "april",
    "arch", "arctic", "area", "arena", "argue", "arm", "armed", "armor",
    "army", "around", "arrange", "arrest", "arrive", "arrow", "art", "artefact",
    "artist", "artwork", "ask", "aspect", "assault", "asset", "assist", "assume",
    "asthma", "athlete", "atom", "attack", "attend", "attitude", "attract", "auction",
    "audit", "august", "aunt", "author", "auto", "autumn", "average", "avocado",
};

static int mkdir_p(const char *path, mode_t mode)
{
    char *p = xstrdup(path);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = 0;
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, mode) < 0 && errno != EEXIST) {
                free(p);
                return -1;
            }
            *s = '/';
        }
    }
    int r = mkdir(p, mode);
    if (r < 0 && errno == EEXIST) {
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
            r = 0;
        else
            errno = ENOTDIR;
    }
    free(p);
    return r;
}

static char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *r = xmalloc(la + lb + 2);
    memcpy(r, a, la);
    size_t o = la;
    if (o == 0 || r[o - 1] != '/')
        r[o++] = '/';
    memcpy(r + o, b, lb + 1);
    return r;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Create the data dir and the key file (never rewriting an existing key). */
static void prepare_data_dir(const char *dir)
{
    if (mkdir_p(dir, 0700) < 0) {
        fprintf(stderr, "Error: failed to create data directory %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    /* writability probe: the real node keeps its state in the data dir */
    char *probe = path_join(dir, ".conduit-probe-XXXXXX");
    int pfd = mkstemp(probe);
    if (pfd < 0) {
        fprintf(stderr, "Error: data directory %s is not writable: %s\n", dir, strerror(errno));
        exit(1);
    }
    close(pfd);
    unlink(probe);
    free(probe);

    char *key = path_join(dir, KEY_FILE);
    struct stat st;
    if (lstat(key, &st) == 0) {
        int err = 0;
        char *content = read_file(key, &err);
        if (!content) {
            fprintf(stderr, "Error: failed to load key from %s: %s\n", key, strerror(err));
            exit(1);
        }
        char *pk = json_string_field(content, "privateKeyBase64");
        if (!pk || !*pk) {
            fprintf(stderr, "Error: failed to load key from %s: no privateKeyBase64 field\n", key);
            exit(1);
        }
        free(pk);
        free(content);
        free(key);
        return;
    }

    unsigned char rnd[64], widx[12];
    fill_random(rnd, sizeof rnd);
    fill_random(widx, sizeof widx);
    char mnemonic[256] = "";
    for (int i = 0; i < 12; i++) {
        if (i)
            strcat(mnemonic, " ");
        strcat(mnemonic, WORDS[widx[i] & 127]);
    }
    char *b64 = b64encode(rnd, sizeof rnd, 0, 0);
    char body[512];
    int blen = snprintf(body, sizeof body, "{\"mnemonic\": \"%s\", \"privateKeyBase64\": \"%s\"}\n", mnemonic, b64);
    free(b64);

    char *tmp = path_join(dir, ".conduit_key.json.XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0 || fchmod(fd, 0600) < 0 || write_all(fd, body, (size_t)blen) < 0 || fsync(fd) < 0) {
        fprintf(stderr, "Error: failed to write key %s: %s\n", key, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
        exit(1);
    }
    close(fd);
    /* link() never replaces an existing file */
    if (link(tmp, key) < 0 && errno != EEXIST) {
        fprintf(stderr, "Error: failed to write key %s: %s\n", key, strerror(errno));
        unlink(tmp);
        exit(1);
    }
    unlink(tmp);
    fsync_dir(dir);
    printf("Generated new identity key in %s\n", key);
    free(tmp);
    free(key);
}

/* ------------------------------------------------------------ sockets */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Parse "host:port", ":port", "[v6]:port". Returns 0 on success. */
static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[128];
    const char *port;
    memset(ss, 0, sizeof *ss);
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e || e[1] != ':' || (size_t)(e - s - 1) >= sizeof host)
            return -1;
        memcpy(host, s + 1, (size_t)(e - s - 1));
        host[e - s - 1] = 0;
        port = e + 2;
    } else {
        const char *c = strrchr(s, ':');
        if (!c || (size_t)(c - s) >= sizeof host)
            return -1;
        memcpy(host, s, (size_t)(c - s));
        host[c - s] = 0;
        port = c + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 0 || p > 65535)
        return -1;
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p);
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return -1;
        *len = sizeof *a6;
        return 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)p);
    if (!host[0] || !strcmp(host, "0.0.0.0"))
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (!strcmp(host, "localhost"))
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
        return -1;
    *len = sizeof *a4;
    return 0;
}

static int open_listener(const struct sockaddr_storage *ss, socklen_t len, int type, int backlog)
{
    int fd = socket(ss->ss_family, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (type == SOCK_STREAM && listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    set_nonblock(fd);
    return fd;
}

/* ------------------------------------------------------------- state */

struct region {
    char code[16];
    long long connected;
    unsigned long long up, down;
};

enum { C_METRICS_LISTEN, C_DEAF_LISTEN, C_TCP_LISTEN, C_UDP, C_HTTP, C_ECHO };

#define ECHO_CAP 65536
#define HTTP_IN_CAP 8192

struct conn {
    int fd;
    int type;
    int port;
    char *in;
    size_t inlen;
    char *out;
    size_t outlen, outoff, outcap;
    int closing; /* close after flushing out */
    int eof;
    double t0;
};

static struct conn **g_conns;
static size_t g_nconns, g_capconns;

static struct region g_regions[64];
static int g_nregions;

static long long g_tcp_clients;
static unsigned long long g_up, g_down; /* bytes moved on STANDIN_LISTEN sockets */
static double g_start, g_last_active;
static opts_t g_opts;
static char *g_stats_path;
static volatile sig_atomic_t g_stop;
static int g_sigpipe[2] = {-1, -1};

static struct conn *add_conn(int fd, int type, int port)
{
    struct conn *c = xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->type = type;
    c->port = port;
    c->t0 = now_mono();
    if (g_nconns == g_capconns) {
        g_capconns = g_capconns ? g_capconns * 2 : 64;
        g_conns = xrealloc(g_conns, g_capconns * sizeof *g_conns);
    }
    g_conns[g_nconns++] = c;
    return c;
}

static void free_conn(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    if (c->type == C_ECHO)
        g_tcp_clients--;
    free(c->in);
    free(c->out);
    free(c);
}

static long long total_connected(void)
{
    long long n = g_tcp_clients;
    for (int i = 0; i < g_nregions; i++)
        n += g_regions[i].connected;
    return n;
}

static unsigned long long total_up(void)
{
    unsigned long long n = g_up;
    for (int i = 0; i < g_nregions; i++)
        n += g_regions[i].up;
    return n;
}

static unsigned long long total_down(void)
{
    unsigned long long n = g_down;
    for (int i = 0; i < g_nregions; i++)
        n += g_regions[i].down;
    return n;
}

static long long idle_seconds(double now)
{
    if (total_connected() > 0)
        return 0;
    return (long long)(now - g_last_active);
}

static void parse_regions(const char *env)
{
    if (!env || !*env)
        return;
    char *copy = xstrdup(env), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (!*tok)
            continue;
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || (size_t)(eq - tok) >= sizeof g_regions[0].code || g_nregions >= 64) {
            fprintf(stderr, "Error: bad STANDIN_REGIONS entry \"%s\" (want REGION=connected:up:down)\n", tok);
            exit(1);
        }
        struct region *r = &g_regions[g_nregions++];
        memset(r, 0, sizeof *r);
        memcpy(r->code, tok, (size_t)(eq - tok));
        long long conn = 0;
        unsigned long long up = 0, down = 0;
        int n = sscanf(eq + 1, "%lld:%llu:%llu", &conn, &up, &down);
        if (n < 1) {
            fprintf(stderr, "Error: bad STANDIN_REGIONS entry \"%s\" (want REGION=connected:up:down)\n", tok);
            exit(1);
        }
        r->connected = conn;
        r->up = up;
        r->down = down;
    }
    free(copy);
}

/* ------------------------------------------------------------ metrics */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t avail = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, avail, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < avail) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 0) + 256;
        b->p = xrealloc(b->p, b->cap);
    }
}

static void gauge(struct sbuf *b, const char *name, const char *help, const char *value)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", name, help, name, name, value);
}

static void gauge_ll(struct sbuf *b, const char *name, const char *help, long long v)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", v);
    gauge(b, name, help, s);
}

static char *render_metrics(void)
{
    struct sbuf b = {xmalloc(4096), 0, 4096};
    double now = now_mono();
    char v[64];
    gauge_ll(&b, "conduit_announcing", "Number of announcements in flight to the broker", 0);
    gauge_ll(&b, "conduit_connecting_clients", "Number of clients currently connecting", 0);
    gauge_ll(&b, "conduit_connected_clients", "Number of clients currently connected", total_connected());
    gauge_ll(&b, "conduit_is_live", "Whether the node is connected to the broker (1) or not (0)", 1);
    if (g_major >= 2) {
        gauge_ll(&b, "conduit_max_common_clients", "Configured maximum number of common clients", g_opts.max_common);
        gauge_ll(&b, "conduit_max_personal_clients", "Configured maximum number of personal clients", g_opts.max_personal);
    } else {
        gauge_ll(&b, "conduit_max_clients", "Configured maximum number of clients", g_opts.max_common);
    }
    if (g_opts.bandwidth < 0)
        snprintf(v, sizeof v, "-1");
    else
        snprintf(v, sizeof v, "%.15g", g_opts.bandwidth * 125000.0);
    gauge(&b, "conduit_bandwidth_limit_bytes_per_second", "Configured bandwidth limit in bytes per second (-1 = unlimited)", v);
    snprintf(v, sizeof v, "%llu", total_up());
    gauge(&b, "conduit_bytes_uploaded", "Total bytes uploaded on behalf of clients", v);
    snprintf(v, sizeof v, "%llu", total_down());
    gauge(&b, "conduit_bytes_downloaded", "Total bytes downloaded on behalf of clients", v);
    snprintf(v, sizeof v, "%.3f", now - g_start);
    gauge(&b, "conduit_uptime_seconds", "Seconds since the node started", v);
    gauge_ll(&b, "conduit_idle_seconds", "Seconds since the node last had a connected client", idle_seconds(now));
    sb_printf(&b, "# HELP conduit_build_info Build information\n# TYPE conduit_build_info gauge\n"
                  "conduit_build_info{version=\"%s\"} 1\n", g_version);
    if (g_major >= 2 && g_nregions > 0) {
        static const char *rn[4] = {"conduit_region_connected_clients", "conduit_region_connecting_clients",
                                    "conduit_region_bytes_uploaded", "conduit_region_bytes_downloaded"};
        static const char *rh[4] = {"Connected clients per client region", "Connecting clients per client region",
                                    "Bytes uploaded per client region", "Bytes downloaded per client region"};
        for (int k = 0; k < 4; k++) {
            sb_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n", rn[k], rh[k], rn[k]);
            for (int i = 0; i < g_nregions; i++) {
                struct region *r = &g_regions[i];
                unsigned long long val = k == 0 ? (unsigned long long)r->connected : k == 1 ? 0 : k == 2 ? r->up : r->down;
                sb_printf(&b, "%s{scope=\"common\",region=\"%s\"} %llu\n", rn[k], r->code, val);
            }
        }
    }
    return b.p;
}

static void http_respond(struct conn *c)
{
    char method[16] = "", path[1024] = "";
    sscanf(c->in, "%15s %1023s", method, path);
    char *q = strchr(path, '?');
    if (q)
        *q = 0;
    struct sbuf b = {xmalloc(1024), 0, 1024};
    int head = !strcmp(method, "HEAD");
    if (strcmp(method, "GET") && !head) {
        const char *msg = "Method Not Allowed\n";
        sb_printf(&b, "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      "Allow: GET, HEAD\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(msg), msg);
    } else if (!strcmp(path, "/metrics")) {
        char *body = render_metrics();
        sb_printf(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(body), head ? "" : body);
        free(body);
    } else {
        const char *msg = "404 page not found\n";
        sb_printf(&b, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(msg), head ? "" : msg);
    }
    free(c->out);
    c->out = b.p;
    c->outlen = b.len;
    c->outcap = b.cap;
    c->outoff = 0;
    c->closing = 1;
}

/* ------------------------------------------------------------- stats */

struct snap {
    long long connecting, connected;
    unsigned long long up, down;
};

static struct snap g_printed; /* starts all-zero: an idle node prints nothing */
static double g_last_print = -1e9;

static void write_stats_file(double now)
{
    if (!g_stats_path)
        return;
    char ts[64];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* With --geo (the community build's flag) the file also lists clients per country. */
    char geo[8192] = "";
    if (g_opts.geo) {
        size_t used = (size_t)snprintf(geo, sizeof geo, ",\n  \"geo\": [");
        for (int i = 0; i < g_nregions && used < sizeof geo - 200; i++)
            used += (size_t)snprintf(geo + used, sizeof geo - used,
                                     "%s{\"code\": \"%s\", \"country\": \"%s\", \"count\": %lld, \"count_total\": %lld, "
                                     "\"bytes_up\": %llu, \"bytes_down\": %llu}",
                                     i ? ", " : "", g_regions[i].code, g_regions[i].code, g_regions[i].connected,
                                     g_regions[i].connected, g_regions[i].up, g_regions[i].down);
        snprintf(geo + used, sizeof geo - used, "]");
    }
    char body[10240];
    int n = snprintf(body, sizeof body,
                     "{\n  \"announcing\": 0,\n  \"connectingClients\": 0,\n  \"connectedClients\": %lld,\n"
                     "  \"totalBytesUp\": %llu,\n  \"totalBytesDown\": %llu,\n  \"uptimeSeconds\": %lld,\n"
                     "  \"idleSeconds\": %lld,\n  \"isLive\": true,\n  \"timestamp\": \"%s\"%s\n}\n",
                     total_connected(), total_up(), total_down(), (long long)(now - g_start), idle_seconds(now), ts, geo);
    size_t plen = strlen(g_stats_path);
    char *tmp = xmalloc(plen + 16);
    snprintf(tmp, plen + 16, "%s.tmp", g_stats_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write_all(fd, body, (size_t)n) < 0) {
        fprintf(stderr, "[ERROR] failed to write stats file %s: %s\n", g_stats_path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        return;
    }
    close(fd);
    if (rename(tmp, g_stats_path) < 0) {
        fprintf(stderr, "[ERROR] failed to write stats file %s: %s\n", g_stats_path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
}

/* Print a [STATS] line (and write the 1.x stats file) if counts changed.
 * Returns seconds until another check is due (rate limit 1/s), or -1. */
static double maybe_report(double now)
{
    struct snap s = {0, total_connected(), total_up(), total_down()};
    if (!memcmp(&s, &g_printed, sizeof s))
        return -1;
    if (now - g_last_print < 1.0)
        return 1.0 - (now - g_last_print);
    char up[32], down[32];
    fmt_bytes(s.up, up, sizeof up);
    fmt_bytes(s.down, down, sizeof down);
    long long uptime = (long long)(now - g_start);
    if (g_major >= 2) {
        printf("[STATS] Announcing: 0 | Connecting: %lld | Connected: %lld | Up: %s | Down: %s | Uptime: %llds",
               s.connecting, s.connected, up, down, uptime);
        if (g_nregions > 0) {
            printf(" | Regions:");
            for (int i = 0; i < g_nregions; i++)
                printf(" %s:%lld", g_regions[i].code, g_regions[i].connected);
        }
        printf("\n");
    } else {
        printf("[STATS] Connecting: %lld | Connected: %lld | Up: %s | Down: %s | Uptime: %llds\n",
               s.connecting, s.connected, up, down, uptime);
    }
    fflush(stdout);
    write_stats_file(now);
    g_printed = s;
    g_last_print = now;
    return -1;
}

/* -------------------------------------------------------------- start */

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_sigpipe[1] >= 0) {
        int e = errno;
        ssize_t r = write(g_sigpipe[1], "x", 1);
        (void)r;
        errno = e;
    }
}

static void parse_listen(const char *env)
{
    if (!env || !*env)
        return;
    char *copy = xstrdup(env), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (!*tok)
            continue;
        int type;
        const char *ps;
        if (!strncmp(tok, "tcp:", 4)) {
            type = SOCK_STREAM;
            ps = tok + 4;
        } else if (!strncmp(tok, "udp:", 4)) {
            type = SOCK_DGRAM;
            ps = tok + 4;
        } else {
            fprintf(stderr, "Error: bad STANDIN_LISTEN entry \"%s\" (want tcp:PORT or udp:PORT)\n", tok);
            exit(1);
        }
        char *end;
        long port = strtol(ps, &end, 10);
        if (!*ps || *end || port < 1 || port > 65535) {
            fprintf(stderr, "Error: bad STANDIN_LISTEN entry \"%s\" (want tcp:PORT or udp:PORT)\n", tok);
            exit(1);
        }
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
        int fd = open_listener(&ss, sizeof *a4, type, 4096);
        if (fd < 0) {
            fprintf(stderr, "Error: failed to listen on %s 0.0.0.0:%ld: %s\n", type == SOCK_STREAM ? "tcp" : "udp", port,
                    strerror(errno));
            exit(1);
        }
        add_conn(fd, type == SOCK_STREAM ? C_TCP_LISTEN : C_UDP, (int)port);
        printf("Listening on %s 0.0.0.0:%ld\n", type == SOCK_STREAM ? "tcp" : "udp", port);
    }
    free(copy);
    fflush(stdout);
}

static void queue_out(struct conn *c, const char *data, size_t n)
{
    if (c->outoff > 0 && c->outoff == c->outlen) {
        c->outoff = c->outlen = 0;
    }
    if (c->outlen + n > c->outcap) {
        if (c->outoff > 0) {
            memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
            c->outlen -= c->outoff;
            c->outoff = 0;
        }
        if (c->outlen + n > c->outcap) {
            c->outcap = c->outlen + n;
            c->out = xrealloc(c->out, c->outcap);
        }
    }
    memcpy(c->out + c->outlen, data, n);
    c->outlen += n;
}

/* Returns 0 if fine, -1 if the connection must be dropped. */
static int flush_out(struct conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        if (c->type == C_ECHO)
            g_down += (unsigned long long)w;
        c->outoff += (size_t)w;
    }
    c->outoff = c->outlen = 0;
    return 0;
}

static void accept_all(struct conn *l)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, EMFILE, ... */
        }
        if (l->type == C_METRICS_LISTEN) {
            struct conn *c = add_conn(fd, C_HTTP, l->port);
            c->in = xmalloc(HTTP_IN_CAP + 1);
        } else {
            struct conn *c = add_conn(fd, C_ECHO, l->port);
            g_tcp_clients++;
            g_last_active = now_mono();
            c->outcap = ECHO_CAP;
            c->out = xmalloc(ECHO_CAP);
            char banner[320];
            int n = snprintf(banner, sizeof banner, "standin %s %d\n", g_hostname, l->port);
            queue_out(c, banner, (size_t)n);
            if (flush_out(c) < 0)
                c->closing = c->eof = 1, c->outlen = c->outoff = 0;
        }
    }
}

static void handle_udp(struct conn *u)
{
    char buf[65536 + 400];
    int hl = snprintf(buf, 400, "standin %s %d ", g_hostname, u->port);
    for (int k = 0; k < 64; k++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t r = recvfrom(u->fd, buf + hl, 65536, 0, (struct sockaddr *)&from, &fl);
        if (r < 0)
            return;
        g_up += (unsigned long long)r;
        ssize_t w = sendto(u->fd, buf, (size_t)hl + (size_t)r, MSG_NOSIGNAL, (struct sockaddr *)&from, fl);
        if (w > 0)
            g_down += (unsigned long long)w;
    }
}

/* Returns -1 when the connection is finished. */
static int handle_conn(struct conn *c, short rev, double now)
{
    if (c->type == C_HTTP) {
        if (!c->closing && (rev & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = recv(c->fd, c->in + c->inlen, HTTP_IN_CAP - c->inlen, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                return -1;
            if (r > 0) {
                c->inlen += (size_t)r;
                c->in[c->inlen] = 0;
                if (strstr(c->in, "\r\n\r\n") || strstr(c->in, "\n\n"))
                    http_respond(c);
                else if (c->inlen >= HTTP_IN_CAP)
                    return -1;
            }
        }
        if (c->closing) {
            if (flush_out(c) < 0)
                return -1;
            if (c->outlen == 0)
                return -1;
        }
        if (now - c->t0 > 30)
            return -1;
        return 0;
    }
    /* echo */
    if ((rev & (POLLIN | POLLHUP | POLLERR)) && !c->eof) {
        size_t space = c->outcap - c->outlen;
        if (space == 0 && c->outoff > 0) {
            memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
            c->outlen -= c->outoff;
            c->outoff = 0;
            space = c->outcap - c->outlen;
        }
        if (space > 0) {
            ssize_t r = recv(c->fd, c->out + c->outlen, space, 0);
            if (r == 0)
                c->eof = 1;
            else if (r < 0 && errno != EAGAIN && errno != EINTR)
                return -1;
            else if (r > 0) {
                g_up += (unsigned long long)r;
                c->outlen += (size_t)r;
            }
        }
    }
    if (c->outoff < c->outlen && flush_out(c) < 0)
        return -1;
    if (c->eof && c->outoff >= c->outlen)
        return -1;
    return 0;
}

static int cmd_start(int argc, char **argv)
{
    parse_start_flags(argc, argv, &g_opts);
    parse_regions(getenv("STANDIN_REGIONS"));

    prepare_data_dir(g_opts.data_dir);
    if (g_major < 2 && g_opts.stats_enabled) {
        if (g_opts.stats_file[0] == '/')
            g_stats_path = xstrdup(g_opts.stats_file);
        else
            g_stats_path = path_join(g_opts.data_dir, g_opts.stats_file);
    }

    char bw[32];
    fmt_bandwidth(g_opts.bandwidth, bw, sizeof bw);
    if (g_major >= 2)
        printf("Starting Psiphon Conduit (Max Common Clients: %ld, Bandwidth: %s)\n", g_opts.max_common, bw);
    else
        printf("Starting Psiphon Conduit (Max Clients: %ld, Bandwidth: %s)\n", g_opts.max_common, bw);
    fflush(stdout);

    double exit_after = -1;
    const char *ea = getenv("STANDIN_EXIT_AFTER");
    if (ea && *ea) {
        exit_after = strtod(ea, NULL);
        if (exit_after <= 0) {
            fprintf(stderr, "[ERROR] conduit exiting (STANDIN_EXIT_AFTER=%s)\n", ea);
            exit(3);
        }
    }

    g_start = g_last_active = now_mono();

    if (pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        perror("pipe2");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (g_opts.metrics_addr && *g_opts.metrics_addr) {
        struct sockaddr_storage ss;
        socklen_t len;
        if (parse_addr(g_opts.metrics_addr, &ss, &len) < 0) {
            fprintf(stderr, "Error: invalid --metrics-addr \"%s\": want host:port\n", g_opts.metrics_addr);
            return 1;
        }
        int deaf = getenv("STANDIN_NO_METRICS") && !strcmp(getenv("STANDIN_NO_METRICS"), "1");
        int fd = open_listener(&ss, len, SOCK_STREAM, deaf ? 64 : 1024);
        if (fd < 0) {
            fprintf(stderr, "Error: failed to start metrics server: listen tcp %s: %s\n", g_opts.metrics_addr, strerror(errno));
            return 1;
        }
        int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        add_conn(fd, deaf ? C_DEAF_LISTEN : C_METRICS_LISTEN, port);
        printf("Metrics server listening on %s\n", g_opts.metrics_addr);
        fflush(stdout);
    }
    parse_listen(getenv("STANDIN_LISTEN"));

    if (g_stats_path)
        write_stats_file(now_mono());

    struct pollfd *pfds = NULL;
    size_t pcap = 0;
    double deadline = exit_after > 0 ? g_start + exit_after : -1;
    double report_in = maybe_report(now_mono());

    while (!g_stop) {
        size_t n = g_nconns + 1;
        if (n > pcap) {
            pcap = n * 2;
            pfds = xrealloc(pfds, pcap * sizeof *pfds);
        }
        pfds[0].fd = g_sigpipe[0];
        pfds[0].events = POLLIN;
        pfds[0].revents = 0;
        for (size_t i = 0; i < g_nconns; i++) {
            struct conn *c = g_conns[i];
            short ev = 0;
            switch (c->type) {
            case C_DEAF_LISTEN:
                ev = 0;
                break;
            case C_METRICS_LISTEN:
            case C_TCP_LISTEN:
            case C_UDP:
                ev = POLLIN;
                break;
            case C_HTTP:
                ev = c->closing ? POLLOUT : POLLIN;
                break;
            case C_ECHO:
                if (!c->eof && (c->outlen < c->outcap || c->outoff > 0))
                    ev |= POLLIN;
                if (c->outoff < c->outlen)
                    ev |= POLLOUT;
                break;
            }
            pfds[i + 1].fd = c->type == C_DEAF_LISTEN ? -1 : c->fd;
            pfds[i + 1].events = ev;
            pfds[i + 1].revents = 0;
        }
        double now = now_mono();
        double wait = 1.0;
        if (report_in >= 0 && report_in < wait)
            wait = report_in;
        if (deadline > 0 && deadline - now < wait)
            wait = deadline - now;
        if (wait < 0)
            wait = 0;
        int r = poll(pfds, n, (int)(wait * 1000) + 1);
        if (r < 0 && errno != EINTR) {
            perror("poll");
            return 1;
        }
        if (g_stop)
            break;
        now = now_mono();
        if (deadline > 0 && now >= deadline) {
            fprintf(stderr, "[ERROR] conduit exiting (STANDIN_EXIT_AFTER=%s)\n", ea);
            fflush(stdout);
            exit(3);
        }
        size_t count = g_nconns; /* new conns appended during the loop are polled next time */
        for (size_t i = 0; i < count; i++) {
            struct conn *c = g_conns[i];
            short rev = pfds[i + 1].revents;
            if (c->type == C_METRICS_LISTEN || c->type == C_TCP_LISTEN) {
                if (rev & POLLIN)
                    accept_all(c);
            } else if (c->type == C_UDP) {
                if (rev & POLLIN)
                    handle_udp(c);
            } else if (c->type == C_HTTP || c->type == C_ECHO) {
                if (handle_conn(c, rev, now) < 0) {
                    free_conn(c);
                    g_conns[i] = NULL;
                }
            }
        }
        size_t w = 0;
        for (size_t i = 0; i < g_nconns; i++)
            if (g_conns[i])
                g_conns[w++] = g_conns[i];
        g_nconns = w;
        if (total_connected() > 0)
            g_last_active = now;
        report_in = maybe_report(now);
    }

    for (size_t i = 0; i < g_nconns; i++) {
        if (g_conns[i]->fd >= 0)
            close(g_conns[i]->fd);
        g_conns[i]->fd = -1;
    }
    printf("Stopped.\n");
    fflush(stdout);
    return 0;
}

/* ---------------------------------------------------------- ryve-claim */

static int cmd_ryve_claim(int argc, char **argv)
{
    const char *dir = "./data";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-d") || !strcmp(a, "--data-dir")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "Error: flag needs an argument: %s\n", a);
                return 1;
            }
            dir = argv[++i];
        } else if (!strncmp(a, "--data-dir=", 11)) {
            dir = a + 11;
        } else if (!strncmp(a, "-d", 2) && a[2]) {
            dir = a + 2 + (a[2] == '=');
        } else if (!strcmp(a, "-v") || !strcmp(a, "-vv") || !strcmp(a, "--verbose")) {
            /* accepted */
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("Show the claim code for the Ryve app\n\nUsage:\n  conduit ryve-claim [flags]\n\n"
                   "Flags:\n  -d, --data-dir string   directory for keys and state (default \"./data\")\n");
            return 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "Error: unknown flag: %s\n", a);
            return 1;
        } else {
            fprintf(stderr, "Error: unknown command \"%s\" for \"conduit ryve-claim\"\n", a);
            return 1;
        }
    }
    char *key = path_join(dir, KEY_FILE);
    int err = 0;
    char *content = read_file(key, &err);
    if (!content) {
        fprintf(stderr, "Error: failed to load key from %s: %s\n", key, strerror(err));
        return 1;
    }
    char *pk = json_string_field(content, "privateKeyBase64");
    if (!pk) {
        fprintf(stderr, "Error: failed to load key from %s: no privateKeyBase64 field\n", key);
        return 1;
    }
    printf("The claim code contains your node's private key. Anyone who sees it can claim this node.\n");
    printf("Reveal the private key as a claim code? [y/N] ");
    fflush(stdout);
    char line[64] = "";
    if (!fgets(line, sizeof line, stdin))
        line[0] = 0;
    char *s = line;
    while (isspace((unsigned char)*s))
        s++;
    size_t sl = strlen(s);
    while (sl > 0 && isspace((unsigned char)s[sl - 1]))
        s[--sl] = 0;
    if (strcasecmp(s, "y") && strcasecmp(s, "yes")) {
        printf("\nAborted.\n");
        return 1;
    }
    char json[1024];
    int n = snprintf(json, sizeof json, "{\"version\":1,\"data\":{\"name\":\"%s\",\"key\":\"%s\"}}", g_hostname, pk);
    char *code = b64encode((const unsigned char *)json, (size_t)n, 1, 0);
    printf("\nnetwork.ryve.app://(app)/conduits?claim=%s\n", code);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------ monitor */

static void monitor_error(const char *fmt, ...)
{
    va_list ap;
    printf("[ERROR] Configuration error: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    exit(1);
}

static int monitor_main(int argc, char **argv)
{
    double limit = 0;
    long period = 30;
    const char *data_dir = NULL, *metrics = NULL;
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        char name[64];
        if (!strcmp(a, "--"))
            break;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("Usage: conduit-monitor --traffic-limit GB --traffic-period DAYS [--data-dir DIR] "
                   "[--metrics-addr ADDR] -- [conduit start flags]\n");
            return 0;
        }
        if (a[0] != '-')
            monitor_error("unexpected argument \"%s\" (conduit flags go after --)", a);
        if (eq && a[1] == '-') {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        if (strcmp(name, "--traffic-limit") && strcmp(name, "--traffic-period") && strcmp(name, "--data-dir") &&
            strcmp(name, "-d") && strcmp(name, "--metrics-addr"))
            monitor_error("unknown flag %s", name);
        if (!val) {
            if (i + 1 >= argc)
                monitor_error("flag %s needs a value", name);
            val = argv[++i];
        }
        char *end;
        if (!strcmp(name, "--traffic-limit")) {
            limit = strtod(val, &end);
            if (!*val || *end)
                monitor_error("invalid --traffic-limit \"%s\"", val);
        } else if (!strcmp(name, "--traffic-period")) {
            period = strtol(val, &end, 10);
            if (!*val || *end)
                monitor_error("invalid --traffic-period \"%s\"", val);
        } else if (!strcmp(name, "--metrics-addr")) {
            metrics = val;
        } else {
            data_dir = val;
        }
    }
    if (limit < 0)
        monitor_error("traffic limit must not be negative (got %g GB)", limit);
    if (limit > 0) {
        if (limit < 100)
            monitor_error("traffic limit must be at least 100 GB (got %g GB)", limit);
        if (period < 7)
            monitor_error("traffic period must be at least 7 days (got %ld)", period);
    }
    int rest = i < argc ? i + 1 : argc;
    if (rest < argc && !strcmp(argv[rest], "start"))
        rest++;

    char **nargv = xmalloc(sizeof(char *) * (size_t)(argc + 8));
    int k = 0;
    nargv[k++] = "conduit";
    nargv[k++] = "start";
    if (data_dir) {
        nargv[k++] = "--data-dir";
        nargv[k++] = (char *)data_dir;
    }
    if (metrics) {
        nargv[k++] = "--metrics-addr";
        nargv[k++] = (char *)metrics;
    }
    for (int j = rest; j < argc; j++)
        nargv[k++] = argv[j];
    nargv[k] = NULL;

    if (limit > 0)
        printf("[INFO] Traffic limit: %g GB per %ld days\n", limit, period);
    printf("[INFO] Starting Conduit in NORMAL mode\n");
    fflush(stdout);
    execv("/usr/bin/conduit", nargv);
    execv("/proc/self/exe", nargv);
    printf("[ERROR] failed to start conduit: %s\n", strerror(errno));
    return 1;
}

/* --------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *v = getenv("CONDUIT_STANDIN_VERSION");
    if (v && *v)
        g_version = v;
    g_major = atoi(g_version);
    if (g_major < 1)
        g_major = 2;
    if (gethostname(g_hostname, sizeof g_hostname - 1) < 0)
        strcpy(g_hostname, "localhost");

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (!strcmp(base, "conduit-monitor"))
        return monitor_main(argc, argv);

    if (argc < 2) {
        usage_root(stdout);
        return 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version")) {
        printf("conduit version %s\n", g_version);
        return 0;
    }
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage_root(stdout);
        return 0;
    }
    if (!strcmp(cmd, "start"))
        return cmd_start(argc - 2, argv + 2);
    if (!strcmp(cmd, "ryve-claim"))
        return cmd_ryve_claim(argc - 2, argv + 2);
    if (cmd[0] == '-')
        fprintf(stderr, "Error: unknown flag: %s\n", cmd);
    else
        fprintf(stderr, "Error: unknown command \"%s\" for \"conduit\"\nRun 'conduit --help' for usage.\n", cmd);
    return 1;
}
