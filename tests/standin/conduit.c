/*
 * Stand-in for the Psiphon Conduit CLI (and conduit-monitor), used by the
 * integration tests. It must be exactly as strict as the real binary of the
 * version it imitates: same flags (cobra/pflag parsing), same refusals with
 * the same messages and exit codes, same files in the data dir, same metrics
 * and log lines. It carries no client traffic.
 *
 * The profile is baked in at build time (tests/standin/build):
 *   gcc -DSTANDIN_VERSION='"2.0.0"' -DSTANDIN_BUILD='"official"' ...
 * Everything version-dependent is decided by the `struct profile` row that
 * matches; citations are Psiphon-Inc/conduit release-cli-<tag>:cli/<file>:<line>
 * and ssmirr/conduit master (cc08a09).
 *
 * Test knobs (environment; none of them exists upstream):
 *   STANDIN_LISTEN        "tcp:443,udp:5566": plain listeners; TCP connections count as clients
 *   STANDIN_REGIONS       "IR=3:1000:2000,CN=2:10:20" region=connected:up:down (2.0 region gauges,
 *                         community --geo list); counted in the totals
 *   STANDIN_CLIENTS       N connected clients the node reports once it is live
 *   STANDIN_TRAFFIC_BYTES N bytes (up+down) the node reports once live (drives conduit-monitor)
 *   STANDIN_LIVE_AFTER    seconds until the node has announced (default 0.5; "never")
 *   STANDIN_UPGRADE_REQUIRED=1  the broker demands a newer version (the upstream warning)
 *   STANDIN_EXIT_AFTER    exit 3 after N seconds (0 = right after the start-up lines)
 *   STANDIN_EXIT_LINGER   with STANDIN_EXIT_AFTER > 0: close every listener (metrics too) at that
 *                         moment and exit N seconds later (a shutdown that closes its listeners first)
 *   STANDIN_NO_METRICS=1  bind --metrics-addr but never accept (scrapes time out)
 *   STANDIN_KEY_SEED_HEX  64 hex digits: the Ed25519 seed of a key the node makes (ed25519.c)
 *   STANDIN_LOG_FLOOD     N bytes of filler lines (8 KiB each) on stdout before the start-up lines:
 *                         a node that logs far more than a reader of its log may hold
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
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
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ed25519.h"

#ifndef STANDIN_VERSION
#define STANDIN_VERSION "2.0.0"
#endif
#ifndef STANDIN_BUILD
#define STANDIN_BUILD "official"
#endif

#define KEY_FILE "conduit_key.json"
#define COMPARTMENT_FILE "personal_compartment.json"
#define MAX_CLIENTS_LIMIT 1000

/* ---------------------------------------------------------------- profiles */

enum { LOG_PLAIN, LOG_STAMPED }; /* 1.4.0 added internal/logging (timestamp + [OK]) */

struct profile {
    const char *prefix; /* version prefix this row covers */
    const char *build;
    int v2;             /* 2.0 flags: --max-common/--max-personal-clients, --compartment-id, --set */
    int metrics_flag;   /* --metrics-addr: 1.2.0+ (1.1 start.go:62-69 has none) */
    int config_flag;    /* -c shown: 1.3.0+ (1.1/1.2 hide it when a config is embedded) */
    int early_checks;   /* -m/-b refused in start.go before the key is made: 1.3.0+ */
    int log_style;
    int m_announcing;   /* conduit_announcing: 1.4.0+ metrics.go */
    int m_idle;         /* conduit_idle_seconds: 1.4.0+, community */
    int live_by_announce; /* is_live from announcing>0 (1.4.0+); before: "selected broker" notice */
    int minute_info;    /* [INFO] Inproxy activity line: 1.4.0, 1.5.0 */
    int file_announcing; /* stats file "announcing": 1.4.0, 1.5.0 */
    int file_idle;      /* stats file "idleSeconds": 1.4.0+, community */
    int monitor;        /* /usr/local/bin/conduit-monitor: official 1.5.0+ (Dockerfile) */
    int community;      /* ssmirr: --geo, --idle-restart */
    int start_line_from_flag; /* 1.1/1.2 print the start line from the raw -b value in start.go */
    const char *verbose_usage;
    const char *build_rev;    /* psiphon-tunnel-core pinned in go.mod */
};

static const struct profile PROFILES[] = {
    /* prefix  build      v2 met cfg early log          ann idle liveA info fAnn fIdle mon comm rawline */
    {"1.1.", "official", 0, 0, 0, 0, LOG_PLAIN,   0, 0, 0, 0, 0, 0, 0, 0, 1,
     "increase verbosity (-v for verbose, -vv for debug)", "996f485"},
    {"1.2.", "official", 0, 1, 0, 0, LOG_PLAIN,   0, 0, 0, 0, 0, 0, 0, 0, 1,
     "increase verbosity (-v for verbose, -vv for debug)", "996f485"},
    {"1.3.", "official", 0, 1, 1, 1, LOG_PLAIN,   0, 0, 0, 0, 0, 0, 0, 0, 0,
     "increase verbosity (-v for verbose, -vv for debug)", "996f485"},
    {"1.4.", "official", 0, 1, 1, 1, LOG_STAMPED, 1, 1, 1, 1, 1, 1, 0, 0, 0,
     "increase verbosity (-v for verbose output)", "a3384a5"},
    {"1.5.", "official", 0, 1, 1, 1, LOG_STAMPED, 1, 1, 1, 1, 1, 1, 1, 0, 0,
     "increase verbosity (-v for verbose output)", "a3384a5"},
    {"2.0.", "official", 1, 1, 1, 1, LOG_STAMPED, 1, 1, 1, 0, 0, 0, 1, 0, 0,
     "increase verbosity (-v for verbose output)", "8531118"},
    /* ssmirr/conduit master: 1.x flags (start.go:67-74) plus --geo, --idle-restart */
    {"",     "community", 0, 1, 1, 1, LOG_PLAIN,  0, 1, 0, 0, 0, 1, 0, 1, 0,
     "increase verbosity (-v for verbose, -vv for debug)", "996f485"},
};

static const struct profile *P;
static const char *g_version = STANDIN_VERSION;
static char g_hostname[256] = "localhost";

static const struct profile *find_profile(void)
{
    for (size_t i = 0; i < sizeof PROFILES / sizeof PROFILES[0]; i++) {
        const struct profile *p = &PROFILES[i];
        if (!strcmp(p->build, STANDIN_BUILD) && !strncmp(g_version, p->prefix, strlen(p->prefix)))
            return p;
    }
    return NULL;
}

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
            exit(70);
        }
        p += r;
        n -= (size_t)r;
    }
}

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    if (!b->p) {
        b->cap = 256;
        b->p = xmalloc(b->cap);
        b->len = 0;
    }
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

static const char B64STD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *b64encode(const unsigned char *in, size_t n, int urlsafe, int pad)
{
    const char *t = urlsafe ? B64URL : B64STD;
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    size_t o = 0, i;
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = t[(v >> 6) & 63];
        out[o++] = t[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        if (pad) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = t[(v >> 6) & 63];
        if (pad)
            out[o++] = '=';
    }
    out[o] = 0;
    return out;
}

/* Go encoding/base64 (non-strict): '\r' and '\n' are skipped; padded=1 wants '=' padding
 * (StdEncoding), padded=0 refuses it (RawStdEncoding). Returns decoded length or -1. */
static long b64decode(const char *s, const char *alphabet, int padded, unsigned char *out, size_t cap)
{
    char clean[1024];
    size_t n = 0;
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n')
            continue;
        if (n + 1 >= sizeof clean)
            return -1;
        clean[n++] = *s;
    }
    clean[n] = 0;
    size_t npad = 0;
    if (padded) {
        if (n % 4)
            return -1;
        while (npad < 2 && n > npad && clean[n - 1 - npad] == '=')
            npad++;
    } else if (n % 4 == 1) {
        return -1;
    }
    size_t data = n - npad;
    if (padded && npad && (n - npad) % 4 != 4 - npad)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < data; i++) {
        const char *p = strchr(alphabet, clean[i]);
        if (!p || !clean[i])
            return -1;
        acc = (acc << 6) | (uint32_t)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
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

/* os.WriteFile: O_TRUNC in place (not atomic); perm applies only when the file is created. */
static int go_write_file(const char *path, const char *data, size_t n, mode_t perm)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, perm);
    if (fd < 0)
        return -1;
    if (write_all(fd, data, n) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return close(fd);
}

static char *path_join(const char *a, const char *b)
{
    struct sbuf s = {0};
    size_t la = strlen(a);
    while (la > 1 && a[la - 1] == '/')
        la--;
    if (b[0] == '/')
        sb_printf(&s, "%s", b);
    else
        sb_printf(&s, "%.*s/%s", (int)la, a, b);
    return s.p;
}

/* Go filepath.Join cleans "./data" to "data". */
static char *go_clean_join(const char *dir, const char *file)
{
    while (dir[0] == '.' && dir[1] == '/')
        dir += 2;
    if (!strcmp(dir, ".") || !*dir)
        return xstrdup(file);
    return path_join(dir, file);
}

static const char *go_errno(int e)
{
    /* Go's syscall.Errno strings are the lower-case libc ones */
    static char buf[128];
    snprintf(buf, sizeof buf, "%s", strerror(e));
    buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}

/* os.MkdirAll: mkdir parents; an existing directory is left as it is (mode untouched). */
static int mkdir_all(const char *path, mode_t mode, char *err, size_t errn)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        snprintf(err, errn, "mkdir %s: not a directory", path);
        return -1;
    }
    char *p = xstrdup(path);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = 0;
    char *slash = strrchr(p, '/');
    if (slash && slash != p) {
        *slash = 0;
        if (mkdir_all(p, mode, err, errn) < 0) {
            free(p);
            return -1;
        }
        *slash = '/';
    }
    if (mkdir(p, mode) < 0 && !(errno == EEXIST && stat(p, &st) == 0 && S_ISDIR(st.st_mode))) {
        snprintf(err, errn, "mkdir %s: %s", path, go_errno(errno));
        free(p);
        return -1;
    }
    free(p);
    return 0;
}

/* Go's %v of a float64 and Prometheus' text format: shortest repr, %e from exponent 21 (%v)
 * or from exponent 6 ('g' with precision -1, as expfmt writes samples). */
static void go_float(double v, int eprec, char *out, size_t n)
{
    if (v == 0) {
        snprintf(out, n, "0");
        return;
    }
    if (isinf(v)) {
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (isnan(v)) {
        snprintf(out, n, "NaN");
        return;
    }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    char *e = strchr(tmp, 'e');
    int exp = atoi(e + 1);
    if (exp < -4 || exp >= eprec) {
        /* mantissa without trailing zeros, exponent at least two digits */
        *e = 0;
        snprintf(out, n, "%se%c%02d", tmp, exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else {
        int decimals = prec - 1 - exp;
        snprintf(out, n, "%.*f", decimals > 0 ? decimals : 0, v);
    }
}

static void ts_now(char *out, size_t n, const char *fmt)
{
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(out, n, fmt, &tm);
}

/* internal/logging (1.4.0+): "2006-01-02 15:04:05 " before each line */
static void logf_(const char *fmt, ...)
{
    char ts[32];
    ts_now(ts, sizeof ts, "%Y-%m-%d %H:%M:%S");
    printf("%s ", ts);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* RFC 3339 as Go's time.Format(time.RFC3339) writes local time ("Z" in UTC). */
static void rfc3339(char *out, size_t n, int nanos)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char base[40], frac[16] = "", zone[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (nanos && ts.tv_nsec) {
        snprintf(frac, sizeof frac, ".%09ld", ts.tv_nsec);
        size_t l = strlen(frac);
        while (frac[l - 1] == '0')
            frac[--l] = 0;
    }
    if (tm.tm_gmtoff == 0)
        snprintf(zone, sizeof zone, "Z");
    else
        snprintf(zone, sizeof zone, "%c%02ld:%02ld", tm.tm_gmtoff < 0 ? '-' : '+', labs(tm.tm_gmtoff) / 3600,
                 labs(tm.tm_gmtoff) % 3600 / 60);
    snprintf(out, n, "%s%s%s", base, frac, zone);
}

/* ------------------------------------------------------------ JSON (tiny) */

/* A strict JSON syntax check (encoding/json refuses anything else) that also pulls out the
 * string values of top-level keys (matched case-insensitively, as encoding/json does). */
struct jparse {
    const char *s;
    int depth;
    const char *want[4];
    char *got[4];
    int bad_type[4]; /* key present with a non-string value: Unmarshal fails */
};

static void jws(struct jparse *j)
{
    while (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r')
        j->s++;
}

static int jstring(struct jparse *j, char **out)
{
    if (*j->s != '"')
        return -1;
    j->s++;
    struct sbuf b = {0};
    sb_printf(&b, "");
    while (*j->s != '"') {
        unsigned char c = (unsigned char)*j->s;
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            j->s++;
            char e = *j->s;
            if (e == 'u') {
                for (int k = 1; k <= 4; k++)
                    if (!isxdigit((unsigned char)j->s[k]))
                        return -1;
                sb_printf(&b, "?");
                j->s += 4;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                const char *map = "\"\\/\b\f\n\r\t";
                sb_printf(&b, "%c", map[strchr("\"\\/bfnrt", e) - "\"\\/bfnrt"]);
            } else {
                return -1;
            }
            j->s++;
            continue;
        }
        sb_printf(&b, "%c", c);
        j->s++;
    }
    j->s++;
    if (out)
        *out = b.p;
    else
        free(b.p);
    return 0;
}

static int jvalue(struct jparse *j);

static int jnumber(struct jparse *j)
{
    const char *s = j->s;
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (isdigit((unsigned char)*s))
        while (isdigit((unsigned char)*s))
            s++;
    else
        return -1;
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s))
            return -1;
        while (isdigit((unsigned char)*s))
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!isdigit((unsigned char)*s))
            return -1;
        while (isdigit((unsigned char)*s))
            s++;
    }
    j->s = s;
    return 0;
}

static int jobject(struct jparse *j, int top)
{
    j->s++;
    jws(j);
    if (*j->s == '}') {
        j->s++;
        return 0;
    }
    for (;;) {
        char *key = NULL;
        jws(j);
        if (jstring(j, &key) < 0)
            return -1;
        jws(j);
        if (*j->s != ':') {
            free(key);
            return -1;
        }
        j->s++;
        jws(j);
        int slot = -1;
        for (int k = 0; top && k < 4 && j->want[k]; k++)
            if (!strcasecmp(key, j->want[k]))
                slot = k;
        free(key);
        if (slot >= 0 && *j->s == '"') {
            free(j->got[slot]);
            if (jstring(j, &j->got[slot]) < 0)
                return -1;
        } else {
            if (slot >= 0 && strncmp(j->s, "null", 4))
                j->bad_type[slot] = 1;
            if (jvalue(j) < 0)
                return -1;
        }
        jws(j);
        if (*j->s == ',') {
            j->s++;
            continue;
        }
        if (*j->s == '}') {
            j->s++;
            return 0;
        }
        return -1;
    }
}

static int jvalue(struct jparse *j)
{
    jws(j);
    if (++j->depth > 64)
        return -1;
    int r = -1;
    switch (*j->s) {
    case '{':
        r = jobject(j, 0);
        break;
    case '[':
        j->s++;
        jws(j);
        if (*j->s == ']') {
            j->s++;
            r = 0;
            break;
        }
        for (;;) {
            if (jvalue(j) < 0)
                return -1;
            jws(j);
            if (*j->s == ',') {
                j->s++;
                continue;
            }
            if (*j->s == ']') {
                j->s++;
                r = 0;
            }
            break;
        }
        break;
    case '"':
        r = jstring(j, NULL);
        break;
    case 't':
        r = strncmp(j->s, "true", 4) ? -1 : (j->s += 4, 0);
        break;
    case 'f':
        r = strncmp(j->s, "false", 5) ? -1 : (j->s += 5, 0);
        break;
    case 'n':
        r = strncmp(j->s, "null", 4) ? -1 : (j->s += 4, 0);
        break;
    default:
        r = jnumber(j);
    }
    j->depth--;
    return r;
}

/* json.Unmarshal(data, &struct{...}): 0 when it would succeed; fields land in got[]. */
static int json_unmarshal_object(const char *text, struct jparse *j)
{
    j->s = text;
    jws(j);
    int r;
    if (*j->s == '{')
        r = jobject(j, 1);
    else if (!strncmp(j->s, "null", 4))
        r = (j->s += 4, 0);
    else
        return -1; /* any other JSON type cannot go into a struct */
    if (r < 0)
        return -1;
    jws(j);
    if (*j->s)
        return -1;
    for (int k = 0; k < 4; k++)
        if (j->bad_type[k])
            return -1;
    return 0;
}

/* Go's json.Marshal string escaping (HTML-safe) */
static void json_quote(struct sbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c == '\n')
            sb_printf(b, "\\n");
        else if (c == '\r')
            sb_printf(b, "\\r");
        else if (c == '\t')
            sb_printf(b, "\\t");
        else if (c < 0x20 || c == '<' || c == '>' || c == '&')
            sb_printf(b, "\\u%04x", c);
        else
            sb_printf(b, "%c", c);
    }
    sb_printf(b, "\"");
}

/* ------------------------------------------------- cobra / pflag behaviour */

enum { T_INT, T_FLOAT, T_STRING, T_STRARRAY, T_COUNT, T_BOOL };

struct flag {
    const char *name;
    char shorthand;
    int type;
    const char *usage;
    const char *defval; /* DefValue as pflag prints it */
    const char *noopt;  /* NoOptDefVal */
    int changed;
    long long ival;
    double fval;
    char *sval;
    char **arr;
    int narr;
};

struct command {
    const char *name;
    const char *shrt;
    const char *lng;
    int runnable;
    struct flag *flags; /* local flags, NULL-name terminated */
};

/* root persistent flags (cmd/root.go init) */
static struct flag G_FLAGS[] = {
    {"data-dir", 'd', T_STRING, "data directory (stores keys and state)", "./data", NULL},
    {"verbose", 'v', T_COUNT, NULL /* per profile */, "0", "+1"},
    {NULL},
};
#define F_DATA (&G_FLAGS[0])
#define F_VERBOSE (&G_FLAGS[1])

static struct flag ROOT_FLAGS[] = {
    {"help", 'h', T_BOOL, "help for conduit", "false", "true"},
    {"version", 0, T_BOOL, "version for conduit", "false", "true"},
    {NULL},
};

/* start flags, 1.x: 1.1.0 start.go:62-70, 1.2.0 adds --metrics-addr, 1.3.0 always shows -c;
 * community start.go:67-74 adds --geo and --idle-restart */
static struct flag START1_FLAGS[] = {
    {"max-clients", 'm', T_INT, "maximum number of proxy clients (1-1000)", "50", NULL},
    {"bandwidth", 'b', T_FLOAT, "total bandwidth limit in Mbps (-1 for unlimited)", "40", NULL},
    {"stats-file", 's', T_STRING,
     "persist stats to JSON file (default: stats.json in data dir if flag used without value)", "", "stats.json"},
    {"metrics-addr", 0, T_STRING, "address for Prometheus metrics endpoint (e.g., :9090 or 127.0.0.1:9090)", "", NULL},
    {"psiphon-config", 'c', T_STRING, "path to Psiphon network config file (JSON)", "", NULL},
    {"geo", 0, T_BOOL, "enable client location tracking (requires tcpdump, geoip-bin)", "false", "true"},
    {"idle-restart", 0, T_STRING, "restart service after idle duration (e.g., 30m, 1h, 2h)", "", NULL},
    {"help", 'h', T_BOOL, "help for start", "false", "true"},
    {NULL},
};

/* start flags, 2.0.0 start.go:65-71 */
static struct flag START2_FLAGS[] = {
    {"max-common-clients", 'm', T_INT, "maximum number of common proxy clients (0-1000)", "50", NULL},
    {"max-personal-clients", 0, T_INT, "maximum number of personal proxy clients (0-1000)", "0", NULL},
    {"compartment-id", 0, T_STRING, "personal compartment ID or share token", "", NULL},
    {"set", 0, T_STRARRAY, "override allowed config values (key=value), repeatable", "[]", NULL},
    {"bandwidth", 'b', T_FLOAT, "total bandwidth limit in Mbps (-1 for unlimited)", "40", NULL},
    {"metrics-addr", 0, T_STRING, "address for Prometheus metrics endpoint (e.g., :9090 or 127.0.0.1:9090)", "", NULL},
    {"psiphon-config", 'c', T_STRING, "path to Psiphon network config file (JSON)", "", NULL},
    {"help", 'h', T_BOOL, "help for start", "false", "true"},
    {NULL},
};

static struct flag RYVE_FLAGS[] = {
    {"name", 'n', T_STRING, "Name for Ryve association", NULL /* hostname */, NULL},
    {"output", 'o', T_STRING, "PNG output file path (optional)", "", NULL},
    {"help", 'h', T_BOOL, "help for ryve-claim", "false", "true"},
    {NULL},
};

static struct flag NCID_FLAGS[] = {
    {"name", 'n', T_STRING, "display name in share token (max 32 chars)", NULL /* hostname */, NULL},
    {"help", 'h', T_BOOL, "help for new-compartment-id", "false", "true"},
    {NULL},
};

static struct flag HELP_FLAGS[] = {
    {"help", 'h', T_BOOL, "help for help", "false", "true"},
    {NULL},
};

static struct flag COMPLETION_FLAGS[] = {
    {"help", 'h', T_BOOL, "help for completion", "false", "true"},
    {NULL},
};

static const char *START_LONG = "Start the Conduit inproxy service to relay traffic for users in censored regions.";

static struct command CMD_ROOT = {"conduit", "Conduit - A volunteer-run proxy relay for the Psiphon network",
                                  "Conduit is a Psiphon inproxy service that relays traffic for users\n"
                                  "in censored regions, helping them access the open internet.\n\n"
                                  "Run 'conduit start' to begin relaying traffic.",
                                  0, ROOT_FLAGS};
static struct command CMD_START = {"start", "Start the Conduit inproxy service", NULL, 1, NULL};
static struct command CMD_RYVE = {"ryve-claim", "Output Conduit claim data for Ryve",
                                  "Show Ryve Claim Qr-code in both terminal and PNG format.", 1, RYVE_FLAGS};
static struct command CMD_NCID = {"new-compartment-id", "Create and persist a personal compartment ID",
                                  "Generate a personal compartment ID, save it to the data directory, and output a share token.",
                                  1, NCID_FLAGS};
static struct command CMD_HELP = {"help", "Help about any command",
                                  "Help provides help for any command in the application.\n"
                                  "Simply type conduit help [path to command] for full details.",
                                  1, HELP_FLAGS};
static struct command CMD_COMPLETION = {"completion", "Generate the autocompletion script for the specified shell",
                                        "Generate the autocompletion script for conduit for the specified shell.\n"
                                        "See each sub-command's help for details on how to use the generated script.\n",
                                        0, COMPLETION_FLAGS};

/* subcommands in cobra's (alphabetical) order; new-compartment-id only at 2.0.0 */
static struct command *subcommands(int i)
{
    struct command *all[] = {&CMD_COMPLETION, &CMD_HELP, &CMD_NCID, &CMD_RYVE, &CMD_START};
    int k = 0;
    for (size_t j = 0; j < 5; j++) {
        if (all[j] == &CMD_NCID && !P->v2)
            continue;
        if (k++ == i)
            return all[j];
    }
    return NULL;
}

/* Is this flag part of the profile's start command? */
static int flag_in_profile(const struct command *c, const struct flag *f)
{
    if (c != &CMD_START)
        return 1;
    if (!strcmp(f->name, "metrics-addr"))
        return P->metrics_flag;
    if (!strcmp(f->name, "psiphon-config"))
        return P->config_flag;
    if (!strcmp(f->name, "geo") || !strcmp(f->name, "idle-restart"))
        return P->community;
    return 1;
}

static struct flag *lookup(struct command *c, const char *name, size_t len, char shorthand)
{
    struct flag *sets[2] = {c->flags, c == &CMD_ROOT || c == &CMD_COMPLETION ? NULL : G_FLAGS};
    if (c == &CMD_ROOT)
        sets[1] = G_FLAGS;
    for (int s = 0; s < 2; s++) {
        for (struct flag *f = sets[s]; f && f->name; f++) {
            if (!flag_in_profile(c, f))
                continue;
            if (shorthand ? f->shorthand == shorthand : (strlen(f->name) == len && !strncmp(f->name, name, len)))
                return f;
        }
    }
    return NULL;
}

static const char *type_name(const struct flag *f)
{
    switch (f->type) {
    case T_INT:
        return "int";
    case T_FLOAT:
        return "float";
    case T_STRING:
        return "string";
    case T_STRARRAY:
        return "stringArray";
    case T_COUNT:
        return "count";
    default:
        return "";
    }
}

static int cmp_flag(const void *a, const void *b)
{
    return strcmp((*(struct flag *const *)a)->name, (*(struct flag *const *)b)->name);
}

/* pflag FlagUsages: sorted, usage column aligned at the longest "-x, --name type" + 2 */
static void flag_usages(struct sbuf *out, struct flag **fl, int n)
{
    qsort(fl, (size_t)n, sizeof *fl, cmp_flag);
    char lines[32][160];
    size_t maxlen = 0;
    for (int i = 0; i < n; i++) {
        struct flag *f = fl[i];
        char *l = lines[i];
        if (f->shorthand)
            snprintf(l, 160, "  -%c, --%s", f->shorthand, f->name);
        else
            snprintf(l, 160, "      --%s", f->name);
        if (*type_name(f))
            snprintf(l + strlen(l), 160 - strlen(l), " %s", type_name(f));
        if (f->noopt && f->type == T_STRING)
            snprintf(l + strlen(l), 160 - strlen(l), "[=\"%s\"]", f->noopt);
        if (strlen(l) > maxlen)
            maxlen = strlen(l);
    }
    for (int i = 0; i < n; i++) {
        struct flag *f = fl[i];
        const char *usage = f == F_VERBOSE ? P->verbose_usage : f->usage;
        sb_printf(out, "%s%*s %s", lines[i], (int)(maxlen - strlen(lines[i]) + 2), "", usage);
        const char *dv = f->defval ? f->defval : g_hostname;
        int zero = !*dv || !strcmp(dv, "0") || !strcmp(dv, "false") || !strcmp(dv, "[]");
        if (!zero) {
            if (f->type == T_STRING)
                sb_printf(out, " (default \"%s\")", dv);
            else
                sb_printf(out, " (default %s)", dv);
        }
        sb_printf(out, "\n");
    }
}

/* cobra's default usage template (v1.8.1) */
static char *usage_string(struct command *c)
{
    struct sbuf b = {0};
    int is_root = c == &CMD_ROOT;
    sb_printf(&b, "Usage:");
    if (c->runnable)
        sb_printf(&b, "\n  %s%s%s [flags]", is_root ? "" : "conduit ", c->name, "");
    if (is_root || c == &CMD_COMPLETION)
        sb_printf(&b, "\n  %s [command]", is_root ? "conduit" : "conduit completion");
    if (is_root) {
        size_t pad = 11; /* cobra minNamePadding */
        for (int i = 0; subcommands(i); i++)
            if (strlen(subcommands(i)->name) > pad)
                pad = strlen(subcommands(i)->name);
        sb_printf(&b, "\n\nAvailable Commands:");
        for (int i = 0; subcommands(i); i++)
            sb_printf(&b, "\n  %-*s %s", (int)pad, subcommands(i)->name, subcommands(i)->shrt);
    }
    if (c == &CMD_COMPLETION)
        sb_printf(&b, "\n\nAvailable Commands:\n  bash        Generate the autocompletion script for bash\n"
                      "  fish        Generate the autocompletion script for fish\n"
                      "  powershell  Generate the autocompletion script for powershell\n"
                      "  zsh         Generate the autocompletion script for zsh");
    struct flag *local[32], *inherited[8];
    int nl = 0, ni = 0;
    for (struct flag *f = c->flags; f && f->name; f++)
        if (flag_in_profile(c, f))
            local[nl++] = f;
    for (struct flag *f = G_FLAGS; f->name; f++) {
        if (is_root)
            local[nl++] = f;
        else
            inherited[ni++] = f;
    }
    sb_printf(&b, "\n\nFlags:\n");
    flag_usages(&b, local, nl);
    b.len--; /* trimTrailingWhitespaces */
    if (ni) {
        sb_printf(&b, "\n\nGlobal Flags:\n");
        flag_usages(&b, inherited, ni);
        b.len--;
    }
    if (is_root || c == &CMD_COMPLETION)
        sb_printf(&b, "\n\nUse \"%s [command] --help\" for more information about a command.",
                  is_root ? "conduit" : "conduit completion");
    sb_printf(&b, "\n");
    return b.p;
}

static void print_help(struct command *c)
{
    const char *text = c->lng ? c->lng : c->shrt;
    if (c == &CMD_START)
        text = START_LONG;
    size_t n = strlen(text);
    while (n && isspace((unsigned char)text[n - 1]))
        n--;
    char *u = usage_string(c);
    printf("%.*s\n\n%s", (int)n, text, u);
    free(u);
    fflush(stdout);
}

static struct command *g_cmd = &CMD_ROOT;

/* cobra prints "Error: <err>" and the usage on stderr, then main.go prints err again; exit 1 */
static void cobra_fail(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    char *u = usage_string(g_cmd);
    fprintf(stderr, "Error: %s\n%s\n%s\n", msg, u, msg);
    fflush(stderr);
    exit(1);
}

static void flag_display(const struct flag *f, char *out, size_t n)
{
    if (f->shorthand)
        snprintf(out, n, "-%c, --%s", f->shorthand, f->name);
    else
        snprintf(out, n, "--%s", f->name);
}

/* strconv.ParseInt(s, 0, 64) / ParseFloat / ParseBool as pflag calls them */
static void flag_set(struct flag *f, const char *v)
{
    char disp[96];
    flag_display(f, disp, sizeof disp);
    char *end;
    switch (f->type) {
    case T_INT:
    case T_COUNT: {
        if (f->type == T_COUNT && !strcmp(v, "+1")) {
            f->ival++;
            break;
        }
        errno = 0;
        long long x = (*v && !isspace((unsigned char)*v)) ? strtoll(v, &end, 0) : (end = (char *)v, 0);
        if (!*v || *end)
            cobra_fail("invalid argument \"%s\" for \"%s\" flag: strconv.ParseInt: parsing \"%s\": invalid syntax", v, disp, v);
        if (errno == ERANGE)
            cobra_fail("invalid argument \"%s\" for \"%s\" flag: strconv.ParseInt: parsing \"%s\": value out of range", v, disp, v);
        f->ival = x;
        break;
    }
    case T_FLOAT: {
        double x = (*v && !isspace((unsigned char)*v)) ? strtod(v, &end) : (end = (char *)v, 0);
        if (!*v || *end)
            cobra_fail("invalid argument \"%s\" for \"%s\" flag: strconv.ParseFloat: parsing \"%s\": invalid syntax", v, disp, v);
        f->fval = x;
        break;
    }
    case T_BOOL: {
        const char *t[] = {"1", "t", "T", "TRUE", "true", "True"}, *fl[] = {"0", "f", "F", "FALSE", "false", "False"};
        int val = -1;
        for (int i = 0; i < 6; i++) {
            if (!strcmp(v, t[i]))
                val = 1;
            if (!strcmp(v, fl[i]))
                val = 0;
        }
        if (val < 0)
            cobra_fail("invalid argument \"%s\" for \"%s\" flag: strconv.ParseBool: parsing \"%s\": invalid syntax", v, disp, v);
        f->ival = val;
        break;
    }
    case T_STRING:
        free(f->sval);
        f->sval = xstrdup(v);
        break;
    case T_STRARRAY:
        f->arr = xrealloc(f->arr, sizeof(char *) * (size_t)(f->narr + 1));
        f->arr[f->narr++] = xstrdup(v);
        break;
    }
    f->changed = 1;
}

static char **g_args; /* positional arguments left after flags */
static int g_nargs;

/* pflag's parse loop (flag.go parseArgs/parseLongArg/parseShortArg) */
static void parse_flags(int argc, char **argv)
{
    g_args = xmalloc(sizeof(char *) * (size_t)(argc + 1));
    g_nargs = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strlen(a) == 1) {
            g_args[g_nargs++] = (char *)a;
            continue;
        }
        if (a[1] == '-') {
            if (!a[2]) { /* "--" ends the flags */
                for (i++; i < argc; i++)
                    g_args[g_nargs++] = argv[i];
                break;
            }
            const char *name = a + 2;
            if (name[0] == '-' || name[0] == '=')
                cobra_fail("bad flag syntax: %s", a);
            const char *eq = strchr(name, '=');
            size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
            struct flag *f = lookup(g_cmd, name, nlen, 0);
            if (!f) {
                if (nlen == 4 && !strncmp(name, "help", 4)) {
                    print_help(g_cmd);
                    exit(0);
                }
                cobra_fail("unknown flag: --%.*s", (int)nlen, name);
            }
            if (eq)
                flag_set(f, eq + 1);
            else if (f->noopt)
                flag_set(f, f->noopt);
            else if (i + 1 < argc)
                flag_set(f, argv[++i]);
            else
                cobra_fail("flag needs an argument: %s", a);
        } else {
            const char *s = a + 1;
            while (*s) {
                char c = *s;
                struct flag *f = lookup(g_cmd, NULL, 0, c);
                if (!f) {
                    if (c == 'h') {
                        print_help(g_cmd);
                        exit(0);
                    }
                    cobra_fail("unknown shorthand flag: '%c' in -%s", c, s);
                }
                if (s[1] == '=') {
                    flag_set(f, s + 2);
                    break;
                } else if (f->noopt) {
                    flag_set(f, f->noopt);
                    s++;
                } else if (s[1]) {
                    flag_set(f, s + 1);
                    break;
                } else if (i + 1 < argc) {
                    flag_set(f, argv[++i]);
                    break;
                } else {
                    cobra_fail("flag needs an argument: '%c' in -%s", c, s);
                }
            }
        }
    }
    g_args[g_nargs] = NULL;
    struct flag *help = lookup(g_cmd, "help", 4, 0);
    if (help && help->changed && help->ival) {
        print_help(g_cmd);
        exit(0);
    }
}

static struct flag *F(const char *name)
{
    struct flag *f = lookup(g_cmd, name, strlen(name), 0);
    return f;
}

static const char *data_dir(void)
{
    return F_DATA->sval ? F_DATA->sval : "./data";
}

static int levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int d[64][64];
    if (la > 63 || lb > 63)
        return 99;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* cobra legacyArgs on the root: `unknown command "x" for "conduit"` (+ suggestions) */
static void unknown_command(const char *name)
{
    struct sbuf sug = {0};
    sb_printf(&sug, "");
    int any = 0;
    for (int i = 0; subcommands(i); i++) {
        const char *n = subcommands(i)->name;
        if (levenshtein(name, n) <= 2 || !strncasecmp(n, name, strlen(name))) {
            if (!any)
                sb_printf(&sug, "\n\nDid you mean this?\n");
            sb_printf(&sug, "\t%s\n", n);
            any = 1;
        }
    }
    fprintf(stderr, "Error: unknown command \"%s\" for \"conduit\"%s\nRun 'conduit --help' for usage.\n", name, sug.p);
    fprintf(stderr, "unknown command \"%s\" for \"conduit\"%s\n", name, sug.p);
    exit(1);
}

/* ------------------------------------------------------------ key file */

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

/* The stored key as config.go parses it (2.0.0 config.go:295-313, same at 1.1.0:139-157):
 * JSON with a non-empty privateKeyBase64, RawStd base64 or else Std (padded) base64,
 * exactly 64 bytes (crypto.go ParsePrivateKey). 0 = usable; raw[] gets the 64 bytes. */
static int parse_key(const char *content, unsigned char raw[64], char **b64_out, char *why, size_t whyn)
{
    struct jparse j = {0};
    j.want[0] = "privateKeyBase64";
    j.want[1] = "mnemonic";
    if (json_unmarshal_object(content, &j) < 0) {
        snprintf(why, whyn, "invalid JSON");
        return -1;
    }
    char *pk = j.got[0];
    free(j.got[1]);
    if (!pk || !*pk) {
        snprintf(why, whyn, "no privateKeyBase64");
        free(pk);
        return -1;
    }
    unsigned char buf[512];
    long n = b64decode(pk, B64STD, 0, buf, sizeof buf);
    if (n < 0)
        n = b64decode(pk, B64STD, 1, buf, sizeof buf);
    if (n < 0) {
        snprintf(why, whyn, "illegal base64 data");
        free(pk);
        return -2;
    }
    if (n != 64) {
        snprintf(why, whyn, "invalid private key length: expected 64, got %ld", n);
        free(pk);
        return -3;
    }
    memcpy(raw, buf, 64);
    if (b64_out)
        *b64_out = pk;
    else
        free(pk);
    return 0;
}

/* loadOrCreateKey (2.0.0 config.go:291-350; 1.1.0 config.go:135-194): a key file that does
 * not parse is overwritten in place by a NEW key, without a word (verbose mode only says
 * "New keys saved to ..."). os.WriteFile: 0600 only when it creates the file. */
static char *g_priv_b64; /* as stored (InproxyProxySessionPrivateKey) */

/* STANDIN_KEY_SEED_HEX: 64 hex digits, the seed of a key the node makes (tests check the
 * public half against RFC 8032's vectors). 1 = seed[] filled; anything malformed is fatal. */
static int key_seed_from_env(unsigned char seed[32])
{
    const char *hex = getenv("STANDIN_KEY_SEED_HEX");
    if (!hex || !*hex)
        return 0;
    int ok = strlen(hex) == 64;
    for (int i = 0; ok && i < 64; i++)
        ok = isxdigit((unsigned char)hex[i]) != 0;
    if (!ok) {
        fprintf(stderr, "standin: STANDIN_KEY_SEED_HEX must be 64 hex digits\n");
        exit(2);
    }
    for (int i = 0; i < 32; i++) {
        unsigned int byte;
        sscanf(hex + 2 * i, "%2x", &byte);
        seed[i] = (unsigned char)byte;
    }
    return 1;
}

static void load_or_create_key(const char *dir, int verbose)
{
    char *key = go_clean_join(dir, KEY_FILE);
    int err = 0;
    char *content = read_file(key, &err);
    if (content) {
        unsigned char raw[64];
        char why[128];
        if (parse_key(content, raw, &g_priv_b64, why, sizeof why) == 0) {
            if (verbose) {
                if (P->log_style == LOG_STAMPED)
                    logf_("Loaded existing key from %s\n", key);
                else
                    printf("Loaded existing key from %s\n", key);
            }
            free(content);
            free(key);
            return;
        }
        free(content);
    }
    /* crypto.go:74-103: an Ed25519 seed, then ed25519.NewKeyFromSeed: seed || public key.
     * Upstream derives the seed from the mnemonic (BIP39 seed, then HKDF-SHA256 with info
     * "conduit-inproxy-key"); the stand-in draws it at random (or takes STANDIN_KEY_SEED_HEX),
     * and its 24 words, from the first 128 of the list and without a checksum, say nothing of it. */
    unsigned char pair[64], widx[24];
    if (!key_seed_from_env(pair))
        fill_random(pair, 32);
    ed25519_public_key(pair, pair + 32);
    fill_random(widx, sizeof widx);
    struct sbuf m = {0};
    for (int i = 0; i < 24; i++) /* bip39 with 256 bits of entropy: 24 words */
        sb_printf(&m, "%s%s", i ? " " : "", WORDS[widx[i] & 127]);
    g_priv_b64 = b64encode(pair, sizeof pair, 0, 0);
    struct sbuf body = {0};
    sb_printf(&body, "{\n  \"mnemonic\": \"%s\",\n  \"privateKeyBase64\": \"%s\"\n}", m.p, g_priv_b64);
    if (go_write_file(key, body.p, body.len, 0600) < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "failed to load configuration: failed to load or create key: failed to save key: open %s: %s",
                 key, go_errno(errno));
        cobra_fail("%s", msg);
    }
    if (verbose) {
        if (P->log_style == LOG_STAMPED)
            logf_("New keys saved to %s\n", key);
        else
            printf("New keys saved to %s\n", key);
    }
    free(m.p);
    free(body.p);
    free(key);
}

/* ------------------------------------------------- personal compartment (2.0) */

/* config/compartment.go ValidatePersonalCompartmentID: 43 chars of unpadded standard base64, 32 bytes */
static int validate_compartment(const char *id, char *why, size_t n)
{
    while (isspace((unsigned char)*id))
        id++;
    size_t len = strlen(id);
    while (len && isspace((unsigned char)id[len - 1]))
        len--;
    if (!len) {
        snprintf(why, n, "compartment id is empty");
        return -1;
    }
    if (len != 43) {
        snprintf(why, n, "compartment id must be exactly 43 characters");
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if (strchr("-_=", id[i])) {
            snprintf(why, n, "compartment id must use unpadded standard base64 alphabet");
            return -1;
        }
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)id[i]) && id[i] != '+' && id[i] != '/') {
            snprintf(why, n, "compartment id contains invalid character '%c'", id[i]);
            return -1;
        }
    char tmp[64];
    memcpy(tmp, id, len);
    tmp[len] = 0;
    unsigned char buf[64];
    if (b64decode(tmp, B64STD, 0, buf, sizeof buf) != 32) {
        snprintf(why, n, "compartment id must decode to exactly 32 bytes");
        return -1;
    }
    return 0;
}

/* NormalizePersonalCompartmentInput: an ID, or a share token (base64url JSON {"v":"1","data":{"id","name"}}) */
static char *normalize_compartment(const char *in, char *why, size_t n)
{
    while (isspace((unsigned char)*in))
        in++;
    char *t = xstrdup(in);
    size_t len = strlen(t);
    while (len && isspace((unsigned char)t[len - 1]))
        t[--len] = 0;
    if (validate_compartment(t, why, n) == 0)
        return t;
    if (!len) {
        snprintf(why, n, "invalid compartment id or token: token is empty");
        return NULL;
    }
    unsigned char buf[1024];
    long dl = b64decode(t, B64URL, 0, buf, sizeof buf - 1);
    if (dl < 0) {
        snprintf(why, n, "invalid compartment id or token: token must be base64url without padding: illegal base64 data");
        return NULL;
    }
    buf[dl] = 0;
    struct jparse j = {0};
    j.want[0] = "v";
    if (json_unmarshal_object((char *)buf, &j) < 0) {
        snprintf(why, n, "invalid compartment id or token: token payload is not valid JSON");
        return NULL;
    }
    if (!j.got[0] || strcmp(j.got[0], "1")) {
        snprintf(why, n, "invalid compartment id or token: token version must be string \"1\"");
        return NULL;
    }
    const char *idp = strstr((char *)buf, "\"id\"");
    char *id = NULL;
    if (idp) {
        struct jparse k = {0};
        k.s = idp + 4;
        jws(&k);
        if (*k.s == ':') {
            k.s++;
            jws(&k);
            jstring(&k, &id);
        }
    }
    char w2[128];
    if (!id || validate_compartment(id, w2, sizeof w2) < 0) {
        snprintf(why, n, "invalid compartment id or token: token data missing key id");
        return NULL;
    }
    return id;
}

/* ------------------------------------------------------------ sockets */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* net.Listen("tcp", addr) address forms: "host:port", ":port", "[v6]:port" */
static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *why, size_t whyn)
{
    char host[256];
    const char *port;
    memset(ss, 0, sizeof *ss);
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e || e[1] != ':' || (size_t)(e - s - 1) >= sizeof host) {
            snprintf(why, whyn, "listen tcp: address %s: missing port in address", s);
            return -1;
        }
        memcpy(host, s + 1, (size_t)(e - s - 1));
        host[e - s - 1] = 0;
        port = e + 2;
    } else {
        const char *c = strrchr(s, ':');
        if (!c) {
            snprintf(why, whyn, "listen tcp: address %s: missing port in address", s);
            return -1;
        }
        if (memchr(s, ':', (size_t)(c - s))) {
            snprintf(why, whyn, "listen tcp: address %s: too many colons in address", s);
            return -1;
        }
        if ((size_t)(c - s) >= sizeof host)
            return -1;
        memcpy(host, s, (size_t)(c - s));
        host[c - s] = 0;
        port = c + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 0 || p > 65535) {
        snprintf(why, whyn, "listen tcp: lookup tcp/%s: unknown port", port);
        return -1;
    }
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p);
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
            snprintf(why, whyn, "listen tcp: address %s: no suitable address found", s);
            return -1;
        }
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
    else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
        snprintf(why, whyn, "listen tcp: lookup %s: no such host", host);
        return -1;
    }
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
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 || (type == SOCK_STREAM && listen(fd, backlog) < 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    set_nonblock(fd);
    return fd;
}

/* ------------------------------------------------------------- node state */

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
    int closing, eof;
    double t0;
};

static struct conn **g_conns;
static size_t g_nconns, g_capconns;
static struct region g_regions[64];
static int g_nregions;

/* what the node was started with (after the config rules) */
static long long g_max_common, g_max_personal;
static long long g_bw_bytes; /* 0 = unlimited */
static char *g_stats_path;
static int g_verbose;
static int g_geo;

/* the Stats struct of internal/conduit/service.go, fed by "activity notices" */
static struct {
    long long announcing, connecting, connected;
    unsigned long long up, down;
    int live;
} S;
static long long g_tcp_clients;
static unsigned long long g_tcp_up, g_tcp_down;
static long long g_env_clients;
static unsigned long long g_env_bytes;
static double g_start, g_last_active = -1, g_live_at = -1, g_last_stats_log = -1, g_last_info = -1;
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

static double idle_seconds(double now)
{
    if (S.connecting > 0 || S.connected > 0)
        return 0;
    return now - (g_last_active >= 0 ? g_last_active : g_start);
}

/* STANDIN_LOG_FLOOD: lines of 'x' (under dockerd's 16 KiB split), the last one shorter when N asks. */
static void flood_log(const char *env)
{
    static char line[8192];
    unsigned long long left = env && *env ? strtoull(env, NULL, 10) : 0;
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    while (left > 0) {
        size_t n = left < sizeof line ? (size_t)left : sizeof line;
        fwrite(line + sizeof line - n, 1, n, stdout);
        left -= n;
    }
    fflush(stdout);
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
            fprintf(stderr, "standin: bad STANDIN_REGIONS entry \"%s\" (want REGION=connected:up:down)\n", tok);
            exit(1);
        }
        struct region *r = &g_regions[g_nregions++];
        memset(r, 0, sizeof *r);
        memcpy(r->code, tok, (size_t)(eq - tok));
        if (sscanf(eq + 1, "%lld:%llu:%llu", &r->connected, &r->up, &r->down) < 1) {
            fprintf(stderr, "standin: bad STANDIN_REGIONS entry \"%s\" (want REGION=connected:up:down)\n", tok);
            exit(1);
        }
    }
    free(copy);
}

/* ------------------------------------------------------------ metrics */

static void gauge(struct sbuf *b, const char *name, const char *help, double v)
{
    char s[64];
    go_float(v, 6, s, sizeof s); /* expfmt writes floats with 'g', -1 */
    sb_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", name, help, name, name, s);
}

/* The registry of metrics.go at each tag, in promhttp's (name-sorted) order. */
static char *render_metrics(void)
{
    struct sbuf b = {0};
    double now = now_mono();
    if (P->m_announcing)
        gauge(&b, "conduit_announcing", "Number of inproxy announcement requests in flight", (double)S.announcing);
    gauge(&b, "conduit_bandwidth_limit_bytes_per_second", "Configured bandwidth limit in bytes per second (0 = unlimited)",
          (double)g_bw_bytes);
    sb_printf(&b, "# HELP conduit_build_info Build information about the Conduit service\n# TYPE conduit_build_info gauge\n"
                  "conduit_build_info{build_repo=\"https://github.com/Psiphon-Labs/psiphon-tunnel-core.git\","
                  "build_rev=\"%s\",go_version=\"go1.24.12 linux/amd64\",values_rev=\"unknown\"} 1\n",
              P->build_rev);
    gauge(&b, "conduit_bytes_downloaded", "Total number of bytes downloaded through the proxy", (double)S.down);
    gauge(&b, "conduit_bytes_uploaded", "Total number of bytes uploaded through the proxy", (double)S.up);
    gauge(&b, "conduit_connected_clients", "Number of clients currently connected to the proxy", (double)S.connected);
    gauge(&b, "conduit_connecting_clients", "Number of clients currently connecting to the proxy", (double)S.connecting);
    if (P->m_idle)
        gauge(&b, "conduit_idle_seconds", "Number of seconds the proxy has been idle (0 connecting and 0 connected clients)",
              idle_seconds(now));
    gauge(&b, "conduit_is_live", "Whether the service is connected to the Psiphon broker (1 = connected, 0 = disconnected)",
          S.live ? 1 : 0);
    if (P->v2) {
        gauge(&b, "conduit_max_common_clients", "Maximum number of common proxy clients allowed", (double)g_max_common);
        gauge(&b, "conduit_max_personal_clients", "Maximum number of personal proxy clients allowed", (double)g_max_personal);
        /* 2.0.0 metrics.go:154-189: per region and scope, only once the broker reported activity */
        const char *names[4][2] = {
            {"conduit_region_bytes_downloaded", "Accumulated downloaded bytes by region and scope from InproxyProxyActivity deltas"},
            {"conduit_region_bytes_uploaded", "Accumulated uploaded bytes by region and scope from InproxyProxyActivity deltas"},
            {"conduit_region_connected_clients", "Latest connected clients by region and scope from InproxyProxyActivity notices"},
            {"conduit_region_connecting_clients", "Latest connecting clients by region and scope from InproxyProxyActivity notices"},
        };
        if (S.live && g_nregions > 0) {
            for (int k = 0; k < 4; k++) {
                sb_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n", names[k][0], names[k][1], names[k][0]);
                for (int i = 0; i < g_nregions; i++) {
                    struct region *r = &g_regions[i];
                    double v = k == 0 ? (double)r->down : k == 1 ? (double)r->up : k == 2 ? (double)r->connected : 0;
                    char s[64];
                    go_float(v, 6, s, sizeof s);
                    sb_printf(&b, "%s{region=\"%s\",scope=\"common\"} %s\n", names[k][0], r->code, s);
                }
            }
        }
    } else {
        gauge(&b, "conduit_max_clients", "Maximum number of proxy clients allowed", (double)g_max_common);
    }
    gauge(&b, "conduit_uptime_seconds", "Number of seconds since the service started", now - g_start);
    return b.p;
}

static void http_respond(struct conn *c)
{
    char method[16] = "", path[1024] = "";
    sscanf(c->in, "%15s %1023s", method, path);
    char *q = strchr(path, '?');
    if (q)
        *q = 0;
    struct sbuf b = {0};
    if (!strcmp(path, "/metrics")) {
        char *body = render_metrics();
        sb_printf(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8; escaping=underscores\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                  strlen(body), strcmp(method, "HEAD") ? body : "");
        free(body);
    } else {
        const char *msg = "404 page not found\n";
        sb_printf(&b, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                  strlen(msg), msg);
    }
    free(c->out);
    c->out = b.p;
    c->outlen = b.len;
    c->outcap = b.cap;
    c->outoff = 0;
    c->closing = 1;
}

/* ------------------------------------------------------------- stats */

static void fmt_bytes(unsigned long long b, char *out, size_t n)
{
    if (b < 1024) {
        snprintf(out, n, "%llu B", b);
        return;
    }
    unsigned long long div = 1024;
    int exp = 0;
    for (unsigned long long x = b / 1024; x >= 1024; x /= 1024) {
        div *= 1024;
        exp++;
    }
    snprintf(out, n, "%.1f %cB", (double)b / (double)div, "KMGTPE"[exp]);
}

static void fmt_duration(long long s, char *out, size_t n)
{
    long long h = s / 3600, m = s % 3600 / 60, sec = s % 60;
    if (h > 0)
        snprintf(out, n, "%lldh%lldm%llds", h, m, sec);
    else if (m > 0)
        snprintf(out, n, "%lldm%llds", m, sec);
    else
        snprintf(out, n, "%llds", sec);
}

static int cmp_region_traffic(const void *a, const void *b)
{
    const struct region *x = a, *y = b;
    unsigned long long tx = x->up + x->down, ty = y->up + y->down;
    if (tx != ty)
        return tx > ty ? -1 : 1;
    return strcmp(x->code, y->code);
}

/* 2.0.0 service.go:477-537: "none" or common[IR(conn:3|traffic:2.9 KB), ...], top 3 by traffic */
static void region_summary(struct sbuf *b)
{
    if (g_nregions == 0) {
        sb_printf(b, "none");
        return;
    }
    struct region sorted[64];
    memcpy(sorted, g_regions, sizeof(struct region) * (size_t)g_nregions);
    qsort(sorted, (size_t)g_nregions, sizeof sorted[0], cmp_region_traffic);
    sb_printf(b, "common[");
    int lim = g_nregions < 3 ? g_nregions : 3;
    for (int i = 0; i < lim; i++) {
        char t[32];
        fmt_bytes(sorted[i].up + sorted[i].down, t, sizeof t);
        sb_printf(b, "%s%s(conn:%lld|traffic:%s)", i ? ", " : "", sorted[i].code, sorted[i].connected, t);
    }
    if (g_nregions > lim)
        sb_printf(b, ", (+%d more...)", g_nregions - lim);
    sb_printf(b, "]");
}

/* 1.x logStats also writes the stats file: os.WriteFile, in place, 0644, only here
 * (1.5.0 service.go:434-460, :512-526): never at start, only when counts change. */
static void write_stats_file(double now)
{
    if (!g_stats_path)
        return;
    char ts[64];
    rfc3339(ts, sizeof ts, 0);
    struct sbuf b = {0};
    sb_printf(&b, "{\n");
    if (P->file_announcing)
        sb_printf(&b, "  \"announcing\": %lld,\n", S.announcing);
    sb_printf(&b, "  \"connectingClients\": %lld,\n  \"connectedClients\": %lld,\n  \"totalBytesUp\": %llu,\n"
                  "  \"totalBytesDown\": %llu,\n  \"uptimeSeconds\": %lld,\n",
              S.connecting, S.connected, S.up, S.down, (long long)(now - g_start));
    if (P->file_idle)
        sb_printf(&b, "  \"idleSeconds\": %lld,\n", (long long)idle_seconds(now));
    sb_printf(&b, "  \"isLive\": %s,\n", S.live ? "true" : "false");
    /* community service.go:73 `json:"geo,omitempty"`: only with --geo and some countries */
    if (P->community && g_geo && g_nregions > 0) {
        sb_printf(&b, "  \"geo\": [\n");
        for (int i = 0; i < g_nregions; i++) {
            struct region *r = &g_regions[i];
            sb_printf(&b, "    {\n      \"code\": \"%s\",\n      \"country\": \"%s\",\n      \"count\": %lld,\n"
                          "      \"count_total\": %lld,\n      \"bytes_up\": %llu,\n      \"bytes_down\": %llu\n    }%s\n",
                      r->code, r->code, r->connected, r->connected, r->up, r->down, i + 1 < g_nregions ? "," : "");
        }
        sb_printf(&b, "  ],\n");
    }
    sb_printf(&b, "  \"timestamp\": \"%s\"\n}", ts);
    if (go_write_file(g_stats_path, b.p, b.len, 0644) < 0 && g_verbose) {
        if (P->log_style == LOG_STAMPED)
            logf_("[ERROR] Failed to write stats file: open %s: %s\n", g_stats_path, go_errno(errno));
        else
            printf("[ERROR] Failed to write stats file: open %s: %s\n", g_stats_path, go_errno(errno));
    }
    free(b.p);
}

static void log_stats(double now)
{
    char ts[32], up[32], down[32], upt[32];
    ts_now(ts, sizeof ts, "%Y-%m-%d %H:%M:%S");
    fmt_bytes(S.up, up, sizeof up);
    fmt_bytes(S.down, down, sizeof down);
    fmt_duration((long long)(now - g_start), upt, sizeof upt);
    if (P->v2) { /* 2.0.0 service.go:457 */
        struct sbuf r = {0};
        region_summary(&r);
        printf("%s [STATS] Announcing: %lld | Connecting: %lld | Connected: %lld | Up: %s | Down: %s | Uptime: %s | Regions: %s\n",
               ts, S.announcing, S.connecting, S.connected, up, down, upt, r.p);
        free(r.p);
    } else { /* 1.x service.go logStats */
        printf("%s [STATS] Connecting: %lld | Connected: %lld | Up: %s | Down: %s | Uptime: %s\n", ts, S.connecting,
               S.connected, up, down, upt);
        write_stats_file(now);
    }
    fflush(stdout);
    g_last_stats_log = now;
}

/* One InproxyProxyActivity notice from tunnel-core, handled as service.go does. */
static void activity_notice(double now)
{
    long long prev_ann = S.announcing, prev_cing = S.connecting, prev_con = S.connected;
    unsigned long long prev_up = S.up, prev_down = S.down;
    long long regions = 0;
    unsigned long long rup = 0, rdown = 0;
    for (int i = 0; i < g_nregions; i++) {
        regions += g_regions[i].connected;
        rup += g_regions[i].up;
        rdown += g_regions[i].down;
    }
    S.announcing = P->live_by_announce ? 1 : 0; /* tracked from 1.4.0 */
    S.connecting = 0;
    S.connected = g_tcp_clients + g_env_clients + regions;
    S.up = g_tcp_up + rup + g_env_bytes / 2;
    S.down = g_tcp_down + rdown + (g_env_bytes - g_env_bytes / 2);
    if (S.connecting > 0 || S.connected > 0)
        g_last_active = now;

    int became_live = 0;
    if (P->live_by_announce && !S.live && (S.announcing > 0 || S.connecting > 0 || S.connected > 0)) {
        S.live = 1;
        became_live = 1;
    }
    int counts_changed = S.connecting != prev_cing || S.connected != prev_con;
    if (P->v2) {
        /* 2.0.0 service.go:360-367: announcing counts too; bytes every >= 5 s */
        int state = counts_changed || S.announcing != prev_ann;
        int bytes = S.up != prev_up || S.down != prev_down;
        if (state || (bytes && (g_last_stats_log < 0 || now - g_last_stats_log >= 5)))
            log_stats(now);
    } else if (counts_changed) {
        log_stats(now);
    }
    if (P->minute_info) { /* 1.4.0/1.5.0 shouldLogInproxyActivity */
        int log = counts_changed || g_last_info < 0 || now - g_last_info >= 60;
        if (became_live)
            logf_("[OK] Announcing presence to Psiphon broker, you will see announcing=1 while bootstrapping is underway\n");
        if (log) {
            g_last_info = now;
            logf_("[INFO] Inproxy activity: announcing=%lld connecting=%lld connected=%lld\n", S.announcing, S.connecting,
                  S.connected);
        }
    }
}

/* Before 1.4.0 (and in the community build) the node is live once tunnel-core selects a broker. */
static void broker_selected(void)
{
    if (!S.live) {
        S.live = 1;
        printf("[OK] Connected to Psiphon network\n");
        fflush(stdout);
    }
}

/* ------------------------------------------------------------- sockets loop */

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
        int type = !strncmp(tok, "tcp:", 4) ? SOCK_STREAM : !strncmp(tok, "udp:", 4) ? SOCK_DGRAM : -1;
        char *end;
        long port = type < 0 ? 0 : strtol(tok + 4, &end, 10);
        if (type < 0 || !tok[4] || *end || port < 1 || port > 65535) {
            fprintf(stderr, "standin: bad STANDIN_LISTEN entry \"%s\" (want tcp:PORT or udp:PORT)\n", tok);
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
            fprintf(stderr, "standin: failed to listen on %s 0.0.0.0:%ld: %s\n", type == SOCK_STREAM ? "tcp" : "udp", port,
                    strerror(errno));
            exit(1);
        }
        add_conn(fd, type == SOCK_STREAM ? C_TCP_LISTEN : C_UDP, (int)port);
    }
    free(copy);
}

static void queue_out(struct conn *c, const char *data, size_t n)
{
    if (c->outoff > 0 && c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
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
            g_tcp_down += (unsigned long long)w;
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
            return;
        }
        if (l->type == C_METRICS_LISTEN) {
            struct conn *c = add_conn(fd, C_HTTP, l->port);
            c->in = xmalloc(HTTP_IN_CAP + 1);
        } else {
            struct conn *c = add_conn(fd, C_ECHO, l->port);
            g_tcp_clients++;
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
        g_tcp_up += (unsigned long long)r;
        ssize_t w = sendto(u->fd, buf, (size_t)hl + (size_t)r, MSG_NOSIGNAL, (struct sockaddr *)&from, fl);
        if (w > 0)
            g_tcp_down += (unsigned long long)w;
    }
}

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
        if (c->closing && (flush_out(c) < 0 || c->outlen == 0))
            return -1;
        return now - c->t0 > 10 ? -1 : 0; /* metrics.go: ReadTimeout/WriteTimeout 10 s */
    }
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
                g_tcp_up += (unsigned long long)r;
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

/* ---------------------------------------------------------------- start */

static void say(const char *fmt, ...)
{
    /* before 1.4.0 (and ssmirr) plain fmt.Printf; from 1.4.0 logging.Printf with timestamp */
    va_list ap;
    va_start(ap, fmt);
    if (P->log_style == LOG_STAMPED) {
        char ts[32];
        ts_now(ts, sizeof ts, "%Y-%m-%d %H:%M:%S");
        printf("%s ", ts);
    }
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 || errno != ENOENT;
}

/* Go time.ParseDuration, enough for --idle-restart (e.g. 30m, 1h30m, 90s) */
static int parse_duration(const char *s, double *secs)
{
    double total = 0;
    const char *p = s;
    if (!*p)
        return -1;
    if (!strcmp(p, "0")) {
        *secs = 0;
        return 0;
    }
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || *p == '-' || *p == '+')
            return -1;
        p = end;
        double unit;
        if (!strncmp(p, "ns", 2))
            unit = 1e-9, p += 2;
        else if (!strncmp(p, "us", 2) || !strncmp(p, "\xc2\xb5s", 3))
            unit = 1e-6, p += (*p == 'u' ? 2 : 3);
        else if (!strncmp(p, "ms", 2))
            unit = 1e-3, p += 2;
        else if (*p == 's')
            unit = 1, p++;
        else if (*p == 'm')
            unit = 60, p++;
        else if (*p == 'h')
            unit = 3600, p++;
        else
            return -2; /* missing or unknown unit */
        total += v * unit;
    }
    *secs = total;
    return 0;
}

static const char *set_keys_int[] = {"InproxyLimitDownstreamBytesPerSecond", "InproxyLimitUpstreamBytesPerSecond",
                                     "InproxyMaxClients", "InproxyMaxCommonClients", "InproxyMaxPersonalClients",
                                     "InproxyReducedLimitDownstreamBytesPerSecond",
                                     "InproxyReducedLimitUpstreamBytesPerSecond", "InproxyReducedMaxCommonClients", NULL};
static const char *set_keys_bool[] = {"EmitDiagnosticNotices", "EmitInproxyProxyActivity", NULL};
static const char *set_keys_str[] = {"InproxyProxyPersonalCompartmentID", "InproxyReducedEndTime",
                                     "InproxyReducedStartTime", NULL};

static int in_list(const char **l, const char *k)
{
    for (; *l; l++)
        if (!strcmp(*l, k))
            return 1;
    return 0;
}

/* 2.0.0 config/set_overrides.go ParseSetOverrides: only the allowed keys, typed */
static void parse_set_overrides(long long *set_common, int *has_common, long long *set_personal, int *has_personal,
                                char **set_comp)
{
    struct flag *f = F("set");
    for (int i = 0; f && i < f->narr; i++) {
        const char *entry = f->arr[i];
        const char *eq = strchr(entry, '=');
        if (!eq)
            cobra_fail("invalid --set entry \"%s\": expected key=value", entry);
        char key[128];
        const char *ks = entry;
        while (ks < eq && isspace((unsigned char)*ks))
            ks++;
        const char *ke = eq;
        while (ke > ks && isspace((unsigned char)ke[-1]))
            ke--;
        snprintf(key, sizeof key, "%.*s", (int)(ke - ks), ks);
        if (!*key)
            cobra_fail("invalid --set entry \"%s\": key is empty", entry);
        char val[512];
        const char *vs = eq + 1;
        while (isspace((unsigned char)*vs))
            vs++;
        snprintf(val, sizeof val, "%s", vs);
        size_t vl = strlen(val);
        while (vl && isspace((unsigned char)val[vl - 1]))
            val[--vl] = 0;
        char *end;
        long long iv = strtoll(val, &end, 10);
        int is_int = *val && !*end;
        if (in_list(set_keys_int, key)) {
            if (!is_int)
                cobra_fail("invalid --set value for %s: expected integer", key);
            if (!strcmp(key, "InproxyMaxCommonClients") || (!strcmp(key, "InproxyMaxClients") && !*has_common)) {
                *set_common = iv;
                *has_common = !strcmp(key, "InproxyMaxCommonClients") ? 2 : 1;
            }
            if (!strcmp(key, "InproxyMaxPersonalClients")) {
                *set_personal = iv;
                *has_personal = 1;
            }
        } else if (in_list(set_keys_bool, key)) {
            if (strcmp(val, "true") && strcmp(val, "false"))
                cobra_fail("invalid --set value for %s: expected true or false", key);
        } else if (in_list(set_keys_str, key)) {
            if (is_int || !strcmp(val, "true") || !strcmp(val, "false") || !strcmp(val, "null"))
                cobra_fail("invalid --set value for %s: expected string", key);
            if (!strcmp(key, "InproxyProxyPersonalCompartmentID")) {
                char why[256];
                char *id = normalize_compartment(val, why, sizeof why);
                if (!id)
                    cobra_fail("%s", why);
                *set_comp = id;
            }
        } else {
            cobra_fail("unsupported --set key \"%s\"", key);
        }
    }
}

static void bandwidth_error(void)
{
    /* 2.0.0 start.go:128-130 and config.go:239-241; 1.5.0 start.go:107; 1.1.0 config.go:103-105 */
    cobra_fail("%sbandwidth must be at least 1 Mbps (or -1 for unlimited)", P->early_checks ? "" : "failed to load configuration: ");
}

static int cmd_start(void)
{
    g_verbose = (int)F_VERBOSE->ival;
    const char *dir = data_dir();
    struct flag *fcfg = P->config_flag ? F("psiphon-config") : NULL;
    if (fcfg && fcfg->sval && *fcfg->sval && !file_exists(fcfg->sval))
        cobra_fail("psiphon config file not found: %s", fcfg->sval);

    struct flag *fm = F(P->v2 ? "max-common-clients" : "max-clients");
    struct flag *fb = F("bandwidth");
    long long set_common = 0, set_personal = 0;
    int has_set_common = 0, has_set_personal = 0;
    char *set_comp = NULL, *compartment = NULL;
    double idle_restart = 0;

    if (P->v2) {
        /* 2.0.0 start.go:92-133, in this order */
        struct flag *fp = F("max-personal-clients");
        if (fm->changed && (fm->ival < 0 || fm->ival > MAX_CLIENTS_LIMIT))
            cobra_fail("max-common-clients must be between 0 and %d", MAX_CLIENTS_LIMIT);
        if (fp->changed && (fp->ival < 0 || fp->ival > MAX_CLIENTS_LIMIT))
            cobra_fail("max-personal-clients must be between 0 and %d", MAX_CLIENTS_LIMIT);
        parse_set_overrides(&set_common, &has_set_common, &set_personal, &has_set_personal, &set_comp);
        struct flag *fc = F("compartment-id");
        if (fc->changed) {
            char why[256];
            compartment = normalize_compartment(fc->sval, why, sizeof why);
            if (!compartment)
                cobra_fail("%s", why);
        }
        if (fb->changed && fb->fval != -1 && fb->fval < 1)
            bandwidth_error();
    } else if (P->early_checks) {
        /* 1.3.0+ start.go: -m below 1 and -b below 1 refused before the key is made */
        if (fm->changed && fm->ival < 1)
            cobra_fail("max-clients must be between 1 and %d", MAX_CLIENTS_LIMIT);
        if (fb->changed && fb->fval != -1 && fb->fval < 1)
            bandwidth_error();
        struct flag *fi = P->community ? F("idle-restart") : NULL;
        if (fi && fi->sval && *fi->sval) { /* ssmirr start.go:120-130 */
            int r = parse_duration(fi->sval, &idle_restart);
            if (r < 0)
                cobra_fail("invalid idle-restart duration \"%s\": time: %s \"%s\" (use format like 30m, 1h, 2h)", fi->sval,
                           r == -2 ? "missing unit in duration" : "invalid duration", fi->sval);
            if (idle_restart < 30 * 60)
                cobra_fail("idle-restart must be at least 30m");
        }
    }

    /* config.LoadOrCreate: data dir, then the key, then the remaining rules */
    char err[512];
    if (mkdir_all(dir, 0700, err, sizeof err) < 0)
        cobra_fail("failed to load configuration: failed to create data directory: %s", err);
    load_or_create_key(dir, g_verbose > 0);
    if (fcfg && fcfg->sval && *fcfg->sval) {
        int e = 0;
        char *cfgtext = read_file(fcfg->sval, &e);
        struct jparse j = {0};
        if (!cfgtext)
            cobra_fail("failed to load configuration: failed to read psiphon config file: open %s: %s", fcfg->sval,
                       go_errno(e));
        if (json_unmarshal_object(cfgtext, &j) < 0)
            cobra_fail("failed to load configuration: failed to parse psiphon config file: invalid character in JSON");
    }

    double bw_mbps;
    if (P->v2) {
        /* 2.0.0 config.go:157-233 */
        int common_explicit = 0, personal_explicit = 0;
        g_max_common = 0;
        if (fm->changed)
            g_max_common = fm->ival, common_explicit = 1;
        else if (has_set_common)
            g_max_common = set_common, common_explicit = 1;
        g_max_personal = 0;
        struct flag *fp = F("max-personal-clients");
        if (fp->changed)
            g_max_personal = fp->ival, personal_explicit = 1;
        else if (has_set_personal)
            g_max_personal = set_personal, personal_explicit = 1;
        if (!compartment) {
            if (set_comp) {
                compartment = set_comp;
            } else {
                char *path = go_clean_join(dir, COMPARTMENT_FILE);
                int e = 0;
                char *text = read_file(path, &e);
                if (text) {
                    struct jparse j = {0};
                    j.want[0] = "id";
                    char why[256];
                    if (json_unmarshal_object(text, &j) < 0)
                        cobra_fail("failed to load configuration: failed to load personal compartment: failed to parse "
                                   "personal compartment file: invalid JSON");
                    if (validate_compartment(j.got[0] ? j.got[0] : "", why, sizeof why) < 0)
                        cobra_fail("failed to load configuration: failed to load personal compartment: invalid persisted "
                                   "personal compartment id: %s", why);
                    compartment = j.got[0];
                } else if (e != ENOENT) {
                    cobra_fail("failed to load configuration: failed to load personal compartment: open %s: %s", path,
                               go_errno(e));
                }
            }
        }
        if (g_max_common < 0 || g_max_common > MAX_CLIENTS_LIMIT)
            cobra_fail("failed to load configuration: max-common-clients must be between 0 and %d", MAX_CLIENTS_LIMIT);
        if (g_max_personal < 0 || g_max_personal > MAX_CLIENTS_LIMIT)
            cobra_fail("failed to load configuration: max-personal-clients must be between 0 and %d", MAX_CLIENTS_LIMIT);
        if (g_max_common + g_max_personal <= 0) {
            if (common_explicit || personal_explicit) /* config.go:224-227 */
                cobra_fail("failed to load configuration: at least one of --max-common-clients or --max-personal-clients "
                           "must be greater than 0");
            g_max_common = 50;
        }
        if (g_max_personal > 0 && !compartment) /* config.go:231-233 */
            cobra_fail("failed to load configuration: create compartment first with new-compartment-id command");
        bw_mbps = fb->changed ? fb->fval : 40;
    } else {
        /* 1.1.0 config.go:90-105 (0 means "default"); 1.3.0+ start.go passes 0 unless -m was given */
        g_max_common = fm->changed ? fm->ival : 0;
        if (g_max_common == 0)
            g_max_common = 50;
        if (g_max_common < 1 || g_max_common > MAX_CLIENTS_LIMIT)
            cobra_fail("failed to load configuration: max-clients must be between 1 and %d", MAX_CLIENTS_LIMIT);
        if (P->early_checks) {
            bw_mbps = fb->changed ? fb->fval : 40;
        } else {
            bw_mbps = fb->changed ? fb->fval : 40;
            if (bw_mbps == 0)
                bw_mbps = 40;
            if (bw_mbps != -1 && bw_mbps < 1)
                bandwidth_error();
        }
        struct flag *fs = F("stats-file");
        if (fs->sval && *fs->sval) /* start.go: relative names go into the data dir */
            g_stats_path = fs->sval[0] == '/' ? xstrdup(fs->sval) : go_clean_join(dir, fs->sval);
        if (P->community)
            g_geo = F("geo")->ival;
    }
    g_bw_bytes = bw_mbps == -1 ? 0 : (long long)(bw_mbps * 1000 * 1000 / 8);

    parse_regions(getenv("STANDIN_REGIONS"));
    const char *ec = getenv("STANDIN_CLIENTS");
    g_env_clients = ec ? atoll(ec) : 0;
    const char *eb = getenv("STANDIN_TRAFFIC_BYTES");
    g_env_bytes = eb ? strtoull(eb, NULL, 10) : 0;
    g_start = now_mono();

    if (pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    flood_log(getenv("STANDIN_LOG_FLOOD"));

    char bwstr[32];
    if (P->start_line_from_flag) /* 1.1.0 start.go:132-136: from the -b value itself */
        fb->changed && fb->fval != -1 ? snprintf(bwstr, sizeof bwstr, "%.0f Mbps", fb->fval)
                                      : snprintf(bwstr, sizeof bwstr, fb->changed ? "unlimited" : "40 Mbps");
    else if (g_bw_bytes > 0)
        snprintf(bwstr, sizeof bwstr, "%.0f Mbps", (double)g_bw_bytes * 8 / 1000 / 1000);
    else
        snprintf(bwstr, sizeof bwstr, "unlimited");
    if (P->start_line_from_flag) {
        printf("Starting Psiphon Conduit (Max Clients: %lld, Bandwidth: %s)\n", g_max_common, bwstr);
        fflush(stdout);
    }
    if (P->community && g_geo) { /* ssmirr service.go:100-108 */
        printf("[GEO] Tracking enabled\n");
        fflush(stdout);
    }

    struct flag *fmet = P->metrics_flag ? F("metrics-addr") : NULL;
    if (fmet && fmet->sval && *fmet->sval) {
        struct sockaddr_storage ss;
        socklen_t len;
        char why[300];
        const char *addr = fmet->sval;
        if (parse_addr(addr, &ss, &len, why, sizeof why) < 0)
            cobra_fail("conduit service error: failed to start metrics server: failed to bind to %s: %s", addr, why);
        int deaf = getenv("STANDIN_NO_METRICS") && !strcmp(getenv("STANDIN_NO_METRICS"), "1");
        int fd = open_listener(&ss, len, SOCK_STREAM, deaf ? 64 : 1024);
        if (fd < 0)
            cobra_fail("conduit service error: failed to start metrics server: failed to bind to %s: listen tcp %s: bind: %s",
                       addr, addr, go_errno(errno));
        add_conn(fd, deaf ? C_DEAF_LISTEN : C_METRICS_LISTEN, 0);
        if (P->log_style == LOG_STAMPED)
            say("[OK] Prometheus metrics available at http://%s/metrics\n", addr);
        else
            say("Prometheus metrics available at http://%s/metrics\n", addr);
    }
    if (P->v2)
        say("[OK] Starting Psiphon Conduit (Max Common Clients: %lld, Max Personal Clients: %lld, Bandwidth: %s)\n",
            g_max_common, g_max_personal, bwstr);
    else if (P->log_style == LOG_STAMPED)
        say("[OK] Starting Psiphon Conduit (Max Clients: %lld, Bandwidth: %s)\n", g_max_common, bwstr);
    else if (!P->start_line_from_flag)
        say("Starting Psiphon Conduit (Max Clients: %lld, Bandwidth: %s)\n", g_max_common, bwstr);

    double exit_after = -1;
    const char *ea = getenv("STANDIN_EXIT_AFTER");
    if (ea && *ea) {
        exit_after = strtod(ea, NULL);
        if (exit_after <= 0) {
            fflush(stdout); /* a Go binary's lines are not buffered: the start lines come before this one */
            fprintf(stderr, "standin: exiting (STANDIN_EXIT_AFTER=%s)\n", ea);
            exit(3);
        }
    }
    const char *la = getenv("STANDIN_LIVE_AFTER");
    double live_after = la && *la ? (strcmp(la, "never") ? strtod(la, NULL) : -1) : 0.5;
    g_live_at = live_after >= 0 ? g_start + live_after : -1;
    int upgrade = getenv("STANDIN_UPGRADE_REQUIRED") && !strcmp(getenv("STANDIN_UPGRADE_REQUIRED"), "1");
    parse_listen(getenv("STANDIN_LISTEN"));

    struct pollfd *pfds = NULL;
    size_t pcap = 0;
    double deadline = exit_after > 0 ? g_start + exit_after : -1;
    double next_notice = g_live_at;
    int announced = 0;
    while (!g_stop) {
        size_t n = g_nconns + 1;
        if (n > pcap) {
            pcap = n * 2;
            pfds = xrealloc(pfds, pcap * sizeof *pfds);
        }
        pfds[0].fd = g_sigpipe[0];
        pfds[0].events = POLLIN;
        for (size_t i = 0; i < g_nconns; i++) {
            struct conn *c = g_conns[i];
            short ev = 0;
            if (c->type == C_METRICS_LISTEN || c->type == C_TCP_LISTEN || c->type == C_UDP)
                ev = POLLIN;
            else if (c->type == C_HTTP)
                ev = c->closing ? POLLOUT : POLLIN;
            else if (c->type == C_ECHO) {
                if (!c->eof && (c->outlen < c->outcap || c->outoff > 0))
                    ev |= POLLIN;
                if (c->outoff < c->outlen)
                    ev |= POLLOUT;
            }
            pfds[i + 1].fd = c->type == C_DEAF_LISTEN ? -1 : c->fd;
            pfds[i + 1].events = ev;
            pfds[i + 1].revents = 0;
        }
        double now = now_mono(), wait = 1.0;
        if (next_notice >= 0 && next_notice - now < wait)
            wait = next_notice - now;
        if (deadline > 0 && deadline - now < wait)
            wait = deadline - now;
        if (wait < 0)
            wait = 0;
        if (poll(pfds, n, (int)(wait * 1000) + 1) < 0 && errno != EINTR)
            return 1;
        if (g_stop)
            break;
        now = now_mono();
        if (deadline > 0 && now >= deadline) {
            fprintf(stderr, "standin: exiting (STANDIN_EXIT_AFTER=%s)\n", ea);
            const char *linger = getenv("STANDIN_EXIT_LINGER");
            if (linger && *linger) {
                for (size_t i = 0; i < g_nconns; i++)
                    close(g_conns[i]->fd);
                usleep((useconds_t)(strtod(linger, NULL) * 1e6));
            }
            exit(3);
        }
        size_t count = g_nconns;
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
        /* tunnel-core's activity notices: once the broker is reached, then about every second */
        if (next_notice >= 0 && now >= next_notice) {
            if (!announced) {
                announced = 1;
                if (!P->live_by_announce)
                    broker_selected();
                if (upgrade) /* 2.0.0 service.go:431-432; before 1.4.0 fmt.Println("\nWARNING: ...") */
                    P->log_style == LOG_STAMPED ? say("WARNING: A newer version of Conduit is required. Please upgrade.\n")
                                                : say("\nWARNING: A newer version of Conduit is required. Please upgrade.\n");
            }
            activity_notice(now);
            next_notice = now + 1.0;
        }
    }

    for (size_t i = 0; i < g_nconns; i++)
        if (g_conns[i]->fd >= 0)
            close(g_conns[i]->fd);
    /* start.go: "Shutting down..." from the signal goroutine, then "Stopped." */
    if (P->log_style == LOG_STAMPED) {
        say("Shutting down...\n");
        say("Stopped.\n");
    } else {
        say("\nShutting down...\n");
        say("Stopped.\n");
    }
    return 0;
}

/* ----------------------------------------------------------- ryve-claim */

/* cmd/ryve.go (same from 1.1.0 to 2.0.0): asks first, then loads the key (LoadKey: a bad key
 * is an error here, not replaced), payload {"data":{"key":K,"name":N},"version":1} (json.Marshal
 * of a map: sorted keys), URL-safe base64 WITH padding, K = 64 key bytes as unpadded std base64. */
static int cmd_ryve_claim(void)
{
    printf("This command will reveal your station's private key to terminal output. Please only reveal in a secure "
           "location. Continue? (y/n) ");
    fflush(stdout);
    char line[256];
    size_t n = 0;
    int c, got_nl = 0;
    while ((c = getchar()) != EOF) {
        if (n + 1 < sizeof line)
            line[n++] = (char)c;
        if (c == '\n') {
            got_nl = 1;
            break;
        }
    }
    line[n] = 0;
    if (!got_nl)
        cobra_fail("failed to read confirmation: EOF");
    char *s = line;
    while (isspace((unsigned char)*s))
        s++;
    size_t sl = strlen(s);
    while (sl && isspace((unsigned char)s[sl - 1]))
        s[--sl] = 0;
    for (char *q = s; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    if (strcmp(s, "y") && strcmp(s, "yes")) {
        printf("Aborted.\n");
        return 0;
    }
    const char *dir = data_dir();
    char *key = go_clean_join(dir, KEY_FILE);
    int err = 0;
    char *content = read_file(key, &err);
    if (!content) {
        if (err == ENOENT) {
            printf("Start your station first to create a key\n");
            cobra_fail("missing key");
        }
        cobra_fail("failed to load key: failed to load key: open %s: %s", key, go_errno(err));
    }
    unsigned char raw[64];
    char why[128];
    int r = parse_key(content, raw, NULL, why, sizeof why);
    if (r == -1)
        cobra_fail("failed to load key: failed to parse key: %s", why);
    if (r == -2)
        cobra_fail("failed to load key: failed to parse key: %s", why);
    if (r == -3)
        cobra_fail("failed to load key: %s", why);

    struct flag *fname = F("name");
    const char *name = fname->changed ? fname->sval : g_hostname;
    char *k86 = b64encode(raw, 64, 0, 0); /* crypto.go:120-134 KeyPairToBase64NoPad */
    struct sbuf payload = {0};
    sb_printf(&payload, "{\"data\":{\"key\":");
    json_quote(&payload, k86);
    sb_printf(&payload, ",\"name\":");
    json_quote(&payload, name);
    sb_printf(&payload, "},\"version\":1}");
    char *claim = b64encode((unsigned char *)payload.p, payload.len, 1, 1);
    /* Proxy ID (crypto.go:137-154 KeyPairToCurve25519Base64): the Curve25519 u of the STORED
     * public half (ParsePrivateKey keeps key[32:], it does not re-derive it from the seed);
     * bytes that are no curve point fail here, before any PNG is written. */
    unsigned char u[32];
    if (ed25519_montgomery_u(raw + 32, u) < 0)
        cobra_fail("failed to derive proxy id: failed to convert public key: edwards25519: invalid point encoding");
    char *pid = b64encode(u, 32, 0, 0);
    struct flag *fout = F("output");
    char *png = fout->sval && *fout->sval ? xstrdup(fout->sval) : go_clean_join(dir, "ryve-claim-qr.png");

    /* The real command writes a 300x300 QR PNG of the URL there and draws the QR on the terminal.
     * The stand-in writes the URL itself into that file (not a PNG) and prints no URL: a tool
     * must not expect to read the claim URL from the output. */
    struct sbuf uri = {0};
    sb_printf(&uri, "network.ryve.app://(app)/conduits?claim=%s", claim);
    if (go_write_file(png, uri.p, uri.len, 0644) < 0)
        cobra_fail("failed to generate QR code: open %s: %s", png, go_errno(errno));
    /* tabwriter, padding 2 */
    const char *suffix = fname->changed ? "" : " (use --name to explicitly set)";
    printf("Station Name:  %s%s\n", name, suffix);
    printf("Proxy ID:      %s\n", pid);
    printf("claim QR code created at %s, scan this to claim this station in Ryve\n", png);
    printf("[stand-in: QR code not drawn]\n\n");
    return 0;
}

/* ----------------------------------------------------- new-compartment-id */

/* cmd/new_compartment_id.go (2.0.0): 32 random bytes, unpadded std base64, saved as
 * {"id": ...} 0600 in personal_compartment.json (overwriting), and a share token printed. */
static int cmd_new_compartment_id(void)
{
    const char *dir = data_dir();
    struct flag *fname = F("name");
    const char *name = fname->changed ? fname->sval : g_hostname;
    while (isspace((unsigned char)*name))
        name++;
    char *nm = xstrdup(name);
    size_t nl = strlen(nm);
    while (nl && isspace((unsigned char)nm[nl - 1]))
        nm[--nl] = 0;
    if (!fname->changed)
        logf_("[INFO] Defaulting --name to hostname \"%s\" (use --name to override)\n", nm);
    size_t runes = 0;
    for (const char *q = nm; *q; q++)
        if (((unsigned char)*q & 0xc0) != 0x80)
            runes++;
    if (runes > 32)
        cobra_fail("--name must be at most 32 characters");
    unsigned char raw[32];
    fill_random(raw, sizeof raw);
    char *id = b64encode(raw, 32, 0, 0);
    char err[512];
    if (mkdir_all(dir, 0700, err, sizeof err) < 0)
        cobra_fail("failed to create data directory: %s", err);
    char *path = go_clean_join(dir, COMPARTMENT_FILE);
    struct sbuf body = {0};
    sb_printf(&body, "{\n  \"id\": \"%s\"\n}", id);
    if (go_write_file(path, body.p, body.len, 0600) < 0)
        cobra_fail("failed to write personal compartment file: open %s: %s", path, go_errno(errno));
    if (!*nm)
        cobra_fail("name must be non-empty");
    struct sbuf tok = {0};
    sb_printf(&tok, "{\"v\":\"1\",\"data\":{\"id\":\"%s\",\"name\":", id);
    json_quote(&tok, nm);
    sb_printf(&tok, "}}");
    char *token = b64encode((unsigned char *)tok.p, tok.len, 1, 0);
    printf("Saved compartment ID to %s\nShare token:\n%s\n", path, token);
    return 0;
}

/* ------------------------------------------------------------ conduit-monitor */

/* cli/scripts/monitor/main.go (1.5.0, 2.0.0). Logs through Go's log package: stderr,
 * "2006/01/02 15:04:05 " prefix; log.Fatalf exits 1. */
static void mlog(const char *fmt, ...)
{
    char ts[32];
    ts_now(ts, sizeof ts, "%Y/%m/%d %H:%M:%S");
    fprintf(stderr, "%s ", ts);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
}

static struct {
    double limit_gb;
    long long period_days, threshold, min_conn;
    double min_bw;
    const char *data_dir, *metrics_addr;
    char **cargs;
    int ncargs;
} M;

static struct {
    char start[64];
    long long bytes_used;
    int throttled;
    time_t start_sec;
} MS;

static long long m_last_scrape;
static pid_t m_child = -1;
static int m_pipe[2] = {-1, -1};
static volatile sig_atomic_t m_sig, m_chld;

static void m_on_signal(int sig)
{
    if (sig == SIGCHLD)
        m_chld = 1;
    else
        m_sig = 1;
    int e = errno;
    ssize_t r = write(m_pipe[1], "x", 1);
    (void)r;
    errno = e;
}

/* main.go:84-91 */
static int looks_like_value(const char *s)
{
    if (s[0] != '-')
        return 1;
    char *end;
    strtod(s, &end);
    return *s && !*end;
}

/* Go's flag package on the collected monitor flags (main.go:200-212): a bad value stops
 * the parse with a warning, the rest keep their defaults. */
static void m_parse(char **a, int n)
{
    for (int i = 0; i < n; i++) {
        const char *s = a[i];
        const char *name = s + (s[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        char nm[64];
        snprintf(nm, sizeof nm, "%.*s", (int)(eq ? eq - name : (long)strlen(name)), name);
        const char *v = eq ? eq + 1 : (i + 1 < n ? a[++i] : NULL);
        if (!v) {
            mlog("[WARN] Failed to parse monitor flags: flag needs an argument: -%s", nm);
            return;
        }
        char *end;
        int bad = 0;
        if (!strcmp(nm, "traffic-limit") || !strcmp(nm, "min-bandwidth")) {
            double d = strtod(v, &end);
            bad = !*v || *end;
            if (!bad)
                *(!strcmp(nm, "traffic-limit") ? &M.limit_gb : &M.min_bw) = d;
        } else if (!strcmp(nm, "traffic-period") || !strcmp(nm, "bandwidth-threshold") || !strcmp(nm, "min-connections")) {
            long long x = strtoll(v, &end, 0);
            bad = !*v || *end;
            if (!bad)
                *(!strcmp(nm, "traffic-period") ? &M.period_days
                  : !strcmp(nm, "bandwidth-threshold") ? &M.threshold : &M.min_conn) = x;
        } else if (!strcmp(nm, "data-dir") || !strcmp(nm, "d")) {
            M.data_dir = v;
        } else if (!strcmp(nm, "metrics-addr")) {
            M.metrics_addr = v;
        } else {
            mlog("[WARN] Failed to parse monitor flags: flag provided but not defined: -%s", nm);
            return;
        }
        if (bad) {
            mlog("[WARN] Failed to parse monitor flags: invalid value \"%s\" for flag -%s: parse error", v, nm);
            return;
        }
    }
}

static void m_save_state(void)
{
    char *path = go_clean_join(M.data_dir, "traffic_state.json");
    struct sbuf b = {0};
    sb_printf(&b, "{\n  \"periodStartTime\": \"%s\",\n  \"bytesUsed\": %lld,\n  \"isThrottled\": %s\n}", MS.start,
              MS.bytes_used, MS.throttled ? "true" : "false");
    if (go_write_file(path, b.p, b.len, 0644) < 0)
        mlog("[WARN] Failed to save state: open %s: %s", path, go_errno(errno));
    free(b.p);
    free(path);
}

static time_t parse_rfc3339(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
        return 0;
    return timegm(&tm); /* the stand-in's containers run in UTC */
}

static int m_load_state(void)
{
    char *path = go_clean_join(M.data_dir, "traffic_state.json");
    int e = 0;
    char *text = read_file(path, &e);
    free(path);
    if (!text)
        return e == ENOENT ? 1 : 2;
    struct jparse j = {0};
    j.want[0] = "periodStartTime";
    if (json_unmarshal_object(text, &j) < 0)
        return 2;
    const char *bu = strstr(text, "\"bytesUsed\"");
    MS.bytes_used = bu ? atoll(strchr(bu, ':') + 1) : 0;
    MS.throttled = strstr(text, "\"isThrottled\": true") || strstr(text, "\"isThrottled\":true");
    snprintf(MS.start, sizeof MS.start, "%s", j.got[0] ? j.got[0] : "0001-01-01T00:00:00Z");
    MS.start_sec = parse_rfc3339(MS.start);
    return 0;
}

/* scrapeBytesUsed (main.go:511-558): GET http://<metrics-addr>/metrics, 5 s timeout,
 * conduit_bytes_uploaded + conduit_bytes_downloaded. -1 when it fails. */
static long long m_scrape(void)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char why[256];
    if (parse_addr(M.metrics_addr, &ss, &len, why, sizeof why) < 0)
        return -1;
    if (ss.ss_family == AF_INET && ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY))
        ((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        close(fd);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", M.metrics_addr);
    if (write_all(fd, req, (size_t)n) < 0) {
        close(fd);
        return -1;
    }
    struct sbuf b = {0};
    char buf[4096];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        sb_printf(&b, "%.*s", (int)r, buf);
    close(fd);
    if (r < 0 || !b.p || strncmp(b.p, "HTTP/1.1 200", 12)) {
        free(b.p);
        return -1;
    }
    long long up = 0, down = 0;
    for (char *line = b.p; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (!strncmp(line, "conduit_bytes_uploaded ", 23))
            up = (long long)strtod(line + 23, NULL);
        else if (!strncmp(line, "conduit_bytes_downloaded ", 25))
            down = (long long)strtod(line + 25, NULL);
    }
    free(b.p);
    return up + down;
}

static int m_restart_wanted;

static void m_check_traffic(void)
{
    time_t now = time(NULL);
    if (now > MS.start_sec + (time_t)M.period_days * 86400) {
        mlog("[RESET] Traffic period ended. Resetting stats.");
        rfc3339(MS.start, sizeof MS.start, 1);
        MS.start_sec = now;
        MS.bytes_used = 0;
        int was = MS.throttled;
        MS.throttled = 0;
        m_last_scrape = 0;
        m_save_state();
        if (was)
            m_restart_wanted = 1;
        return;
    }
    long long total = m_scrape();
    if (total < 0)
        return; /* main.go:454-459: scrape errors are silent */
    long long delta = total - m_last_scrape;
    if (delta < 0)
        delta = total;
    m_last_scrape = total;
    if (delta > 0) {
        MS.bytes_used += delta;
        m_save_state();
    }
    long long limit = (long long)(M.limit_gb * 1024 * 1024 * 1024); /* main.go:484: "GB" is GiB */
    long long threshold = (long long)((double)limit * (double)M.threshold / 100.0);
    if (!MS.throttled && MS.bytes_used >= threshold) {
        mlog("[THROTTLE] Threshold reached (%lld%%). Throttling...", M.threshold);
        MS.throttled = 1;
        m_save_state();
        m_restart_wanted = 1;
    }
}

static void m_exit_status(int st, char *out, size_t n)
{
    if (WIFEXITED(st))
        snprintf(out, n, "exit status %d", WEXITSTATUS(st));
    else
        snprintf(out, n, "signal: %s", WTERMSIG(st) == SIGTERM ? "terminated" : WTERMSIG(st) == SIGKILL ? "killed"
                                                                                                          : strsignal(WTERMSIG(st)));
}

static pid_t m_spawn(char **args)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp("conduit", args);
        _exit(127);
    }
    return pid;
}

/* wait for the child with a deadline; returns 1 if it exited */
static int m_wait_child(double seconds, int *status)
{
    double end = now_mono() + seconds;
    for (;;) {
        pid_t r = waitpid(m_child, status, WNOHANG);
        if (r == m_child)
            return 1;
        if (now_mono() >= end)
            return 0;
        usleep(20000);
    }
}

static void m_shutdown_child(void)
{
    int st;
    kill(m_child, SIGTERM);
    if (m_wait_child(5, &st)) {
        mlog("[INFO] Child process stopped gracefully");
    } else {
        mlog("[WARN] Child process did not exit gracefully, killing...");
        kill(m_child, SIGKILL);
        waitpid(m_child, &st, 0);
    }
    m_child = -1;
}

static int monitor_main(int argc, char **argv)
{
    M.threshold = 80;
    M.min_conn = 10;
    M.min_bw = 10;
    M.data_dir = "./data";
    M.metrics_addr = "127.0.0.1:9090";
    /* main.go:123-197: split the arguments; data dir and metrics addr go to both */
    char **margs = xmalloc(sizeof(char *) * (size_t)(argc + 1));
    int nm = 0;
    M.cargs = xmalloc(sizeof(char *) * (size_t)(argc + 16));
    M.cargs[M.ncargs++] = "conduit";
    M.cargs[M.ncargs++] = "start";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            int k = i + 1;
            if (k < argc && !strcmp(argv[k], "start"))
                k++;
            for (; k < argc; k++)
                M.cargs[M.ncargs++] = argv[k];
            break;
        }
        const char *mon[] = {"--traffic-limit", "--traffic-period", "--bandwidth-threshold", "--min-connections",
                             "--min-bandwidth"};
        int is_mon = 0;
        for (int k = 0; k < 5; k++)
            if (!strncmp(a, mon[k], strlen(mon[k])))
                is_mon = 1;
        if (is_mon) {
            margs[nm++] = argv[i];
            if (!strchr(a, '=') && i + 1 < argc && looks_like_value(argv[i + 1]))
                margs[nm++] = argv[++i];
            continue;
        }
        int is_dd = !strcmp(a, "--data-dir") || !strcmp(a, "-d") || !strncmp(a, "--data-dir=", 11) || !strncmp(a, "-d=", 3);
        int is_ma = !strcmp(a, "--metrics-addr") || !strncmp(a, "--metrics-addr=", 15);
        if (is_dd || is_ma) {
            if (strchr(a, '=')) {
                margs[nm++] = argv[i];
                M.cargs[M.ncargs++] = argv[i];
            } else if (i + 1 < argc && looks_like_value(argv[i + 1])) {
                margs[nm++] = argv[i];
                margs[nm++] = argv[i + 1];
                M.cargs[M.ncargs++] = argv[i];
                M.cargs[M.ncargs++] = argv[++i];
            } else {
                M.cargs[M.ncargs++] = argv[i];
            }
            continue;
        }
        M.cargs[M.ncargs++] = argv[i];
        if (!strchr(a, '=') && i + 1 < argc && looks_like_value(argv[i + 1]))
            M.cargs[M.ncargs++] = argv[++i];
    }
    M.cargs[M.ncargs] = NULL;
    m_parse(margs, nm);

    if (M.limit_gb <= 0) { /* main.go:64-68 */
        mlog("[INFO] No traffic limit set. Running conduit directly.");
        pid_t pid = m_spawn(M.cargs);
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            char es[64];
            m_exit_status(st, es, sizeof es);
            mlog("[ERROR] Conduit exited with error: %s", es);
            return 1;
        }
        return 0;
    }
    /* validateConfig, main.go:218-235 */
    const char *bad = NULL;
    char msg[128];
    if (M.period_days < 7)
        bad = "traffic-period must be at least 7 days";
    else if (M.limit_gb < 100)
        bad = "traffic-limit must be at least 100 GB";
    else if (M.threshold < 60 || M.threshold > 90)
        bad = "bandwidth-threshold must be between 60-90%";
    else if (M.min_conn <= 0)
        bad = "min-connections must be positive";
    else if (M.min_bw <= 0)
        bad = "min-bandwidth must be positive";
    if (bad) {
        snprintf(msg, sizeof msg, "%s", bad);
        mlog("[ERROR] Configuration error: %s", msg);
        return 1;
    }
    char err[512];
    if (mkdir_all(M.data_dir, 0700, err, sizeof err) < 0) {
        mlog("[ERROR] Failed to create data directory: %s", err);
        return 1;
    }
    int ls = m_load_state();
    if (ls) {
        if (ls == 1)
            mlog("[INFO] No previous state found, starting fresh traffic period");
        else
            mlog("[WARN] Failed to load state, starting fresh: invalid character in JSON");
        rfc3339(MS.start, sizeof MS.start, 1);
        MS.start_sec = time(NULL);
        MS.bytes_used = 0;
        MS.throttled = 0;
        m_save_state();
    }

    if (pipe2(m_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = m_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);

    double next_check = now_mono(); /* monitorLoop: at once, then every 10 s */
    for (;;) {
        if (m_sig) {
            mlog("[INFO] Received signal, shutting down...");
            return 0;
        }
        char **args = xmalloc(sizeof(char *) * (size_t)(M.ncargs + 8));
        int na = 0;
        if (MS.throttled) {
            /* main.go:317-323 (1.5.0 uses --max-clients) */
            const char *mflag = P->v2 ? "--max-common-clients" : "--max-clients";
            mlog("[INFO] Starting Conduit in THROTTLED mode");
            for (int i = 0; i < M.ncargs; i++) {
                const char *a = M.cargs[i];
                int m = !strcmp(a, mflag) || !strcmp(a, "-m"), b = !strcmp(a, "--bandwidth") || !strcmp(a, "-b");
                if (i >= 2 && (m || b)) {
                    if (i + 1 < M.ncargs && looks_like_value(M.cargs[i + 1]))
                        i++;
                    continue;
                }
                char pm[64], pb[64];
                snprintf(pm, sizeof pm, "%s=", mflag);
                snprintf(pb, sizeof pb, "--bandwidth=");
                if (i >= 2 && (!strncmp(a, pm, strlen(pm)) || !strncmp(a, "-m=", 3) || !strncmp(a, pb, strlen(pb)) ||
                               !strncmp(a, "-b=", 3)))
                    continue;
                args[na++] = M.cargs[i];
            }
            static char mc[32], mb[32];
            snprintf(mc, sizeof mc, "%lld", M.min_conn);
            snprintf(mb, sizeof mb, "%.0f", M.min_bw);
            args[na++] = (char *)mflag;
            args[na++] = mc;
            args[na++] = "--bandwidth";
            args[na++] = mb;
        } else {
            mlog("[INFO] Starting Conduit in NORMAL mode");
            for (int i = 0; i < M.ncargs; i++)
                args[na++] = M.cargs[i];
        }
        args[na] = NULL;
        m_child = m_spawn(args);
        free(args);
        int child_done = 0, st = 0;
        while (!child_done) {
            double wait = next_check - now_mono();
            struct pollfd pfd = {m_pipe[0], POLLIN, 0};
            poll(&pfd, 1, wait > 0 ? (int)(wait * 1000) + 1 : 0);
            char drain[64];
            while (read(m_pipe[0], drain, sizeof drain) > 0)
                ;
            if (waitpid(m_child, &st, WNOHANG) == m_child) {
                child_done = 1;
                m_child = -1;
                break;
            }
            if (m_sig) {
                mlog("[INFO] Received signal, shutting down...");
                m_shutdown_child();
                return 0;
            }
            if (now_mono() >= next_check) {
                m_check_traffic();
                next_check = now_mono() + 10;
            }
            if (m_restart_wanted) {
                m_restart_wanted = 0;
                mlog("[INFO] Restarting Conduit to apply new settings...");
                m_shutdown_child();
                break;
            }
        }
        if (child_done) {
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                mlog("[INFO] Conduit exited normally");
                return 0;
            }
            char es[64];
            m_exit_status(st, es, sizeof es);
            mlog("[ERROR] Conduit exited with error: %s", es);
            /* main.go:346-352: retry after 5 s, for ever (the container stays "running") */
            double until = now_mono() + 5;
            while (now_mono() < until) {
                usleep(50000);
                if (now_mono() >= next_check) {
                    m_check_traffic();
                    next_check = now_mono() + 10;
                }
            }
        }
    }
}

/* --------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    P = find_profile();
    if (!P) {
        fprintf(stderr, "standin: no profile for %s build %s\n", STANDIN_VERSION, STANDIN_BUILD);
        return 70;
    }
    if (gethostname(g_hostname, sizeof g_hostname - 1) < 0)
        strcpy(g_hostname, "localhost");

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (!strcmp(base, "conduit-monitor")) {
        if (!P->monitor) {
            fprintf(stderr, "standin: this build has no conduit-monitor\n");
            return 127;
        }
        return monitor_main(argc, argv);
    }

    /* cobra Find: the first argument that is not a flag (or a root flag's value) names the command */
    int cmd_at = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--"))
            break;
        if (a[0] != '-') {
            cmd_at = i;
            break;
        }
        if (!strcmp(a, "-d") || !strcmp(a, "--data-dir"))
            i++;
    }
    if (cmd_at < 0) {
        g_cmd = &CMD_ROOT;
        parse_flags(argc - 1, argv + 1);
        if (CMD_ROOT.flags[1].changed && CMD_ROOT.flags[1].ival) { /* --version */
            printf("conduit version %s\n", g_version);
            return 0;
        }
        print_help(&CMD_ROOT); /* the root does not run: help on stdout */
        return 0;
    }
    const char *name = argv[cmd_at];
    struct command *c = NULL;
    for (int i = 0; subcommands(i); i++)
        if (!strcmp(subcommands(i)->name, name))
            c = subcommands(i);
    if (!c)
        unknown_command(name);
    CMD_START.flags = P->v2 ? START2_FLAGS : START1_FLAGS;
    g_cmd = c;
    /* flags before the command name belong to it as well (they are persistent) */
    char **rest = xmalloc(sizeof(char *) * (size_t)argc);
    int nr = 0;
    for (int i = 1; i < argc; i++)
        if (i != cmd_at)
            rest[nr++] = argv[i];
    parse_flags(nr, rest);
    if (c == &CMD_START)
        return cmd_start();
    if (c == &CMD_RYVE)
        return cmd_ryve_claim();
    if (c == &CMD_NCID)
        return cmd_new_compartment_id();
    if (c == &CMD_HELP) {
        struct command *t = &CMD_ROOT;
        for (int i = 0; g_nargs > 0 && subcommands(i); i++)
            if (!strcmp(subcommands(i)->name, g_args[0]))
                t = subcommands(i);
        if (t == &CMD_START)
            CMD_START.flags = P->v2 ? START2_FLAGS : START1_FLAGS;
        if (g_nargs > 0 && t == &CMD_ROOT) {
            printf("Unknown help topic [`%s`]\n", g_args[0]);
            g_cmd = &CMD_ROOT;
            char *u = usage_string(&CMD_ROOT);
            printf("%s", u);
            return 0;
        }
        print_help(t);
        return 0;
    }
    /* completion: the stand-in prints no scripts */
    print_help(&CMD_COMPLETION);
    return 0;
}
