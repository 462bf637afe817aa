/* netkit's plugin launcher in C: forward a CNI request to the warm agent, or exec the Python launcher.
 *
 * Why C: a Python launcher that only forwards spends ~11-14 ms (interpreter start) before the agent
 * does anything, more than the reference Go plugins take for a whole bridge+IPAM ADD.  This program
 * does the forwarding only, and with the agent off answers VERSION in its plain form itself (a constant);
 * everything else (the in-process answer, starting or replacing an agent, "about" output) stays in
 * the Python launcher it execs, with the stdin it consumed replayed.
 *
 * It speaks netkit/agent/protocol.py and mirrors netkit/agent/client.py (exchange, header,
 * json_string) byte for byte.  Written by `netkit cni install` (netkit/launch/native.py), which
 * compiles it once per plugin with these definitions (C string literals):
 *   NETKIT_HEADER_PREFIX  the request header up to the environment: {"version":V,"plugin":P,"env":{
 *   NETKIT_SOCKET         the agent's socket when $NETKIT_AGENT_SOCKET is unset or empty
 *   NETKIT_FALLBACK       the Python launcher exec'd whenever the agent does not answer
 *   NETKIT_MARKER         what invoker.is_own_launcher looks for in this binary
 *   NETKIT_SUPPORTED      the CNI versions VERSION lists, comma-separated (cni/version.SUPPORTED)
 *   NETKIT_LATEST         the version VERSION answers in when asked one it does not speak
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#if !defined(NETKIT_HEADER_PREFIX) || !defined(NETKIT_SOCKET) || !defined(NETKIT_FALLBACK) || !defined(NETKIT_MARKER) \
    || !defined(NETKIT_SUPPORTED) || !defined(NETKIT_LATEST)
#error "compile with -DNETKIT_HEADER_PREFIX=... -DNETKIT_SOCKET=... -DNETKIT_FALLBACK=... -DNETKIT_MARKER=... \
-DNETKIT_SUPPORTED=... -DNETKIT_LATEST=..."
#endif

extern char **environ;

/* Bounds: a CNI config is kilobytes, a result too.  Anything past these is not a request this
 * program should hold in memory; the Python launcher handles it (or refuses it) instead. */
#define MAX_STDIN ((size_t)16 << 20)
#define MAX_HEADER ((size_t)16 << 20)
#define MAX_STDOUT ((uint32_t)64 << 20)
#define MAX_ENV_ENTRIES 4096 /* the duplicate-key check is quadratic: keep it bounded */
#define TIMEOUT_S 120        /* client.TIMEOUT_S */
#define NOT_SERVED (-1)      /* protocol.NOT_SERVED */
#define OTHER_VERSION (-2)   /* protocol.OTHER_VERSION */

/* Kept in the binary (used, and referenced from main) so that the installer can recognise it. */
__attribute__((used)) static const char marker[] = NETKIT_MARKER;

struct buf {
    unsigned char *data;
    size_t len, cap;
};

/* Room for ``more`` bytes past len; 0 on success, -1 when that would pass ``limit`` or malloc fails. */
static int buf_reserve(struct buf *b, size_t more, size_t limit)
{
    if (more > limit || b->len > limit - more)
        return -1;
    size_t need = b->len + more;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap = cap > limit / 2 ? limit : cap * 2;
    unsigned char *data = realloc(b->data, cap);
    if (data == NULL)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

/* Append; the caller has reserved the room. */
static void buf_put(struct buf *b, const void *src, size_t n)
{
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

/* Write all of ``n`` bytes to ``fd``; 0, or -1 on an error.  A socket is written with MSG_NOSIGNAL:
 * an agent gone mid-request is a fallback, not a SIGPIPE. */
static int write_all(int fd, const unsigned char *p, size_t n, int sock)
{
    while (n > 0) {
        ssize_t w = sock ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);
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

/* Read stdin into ``in``: 0 at EOF, 1 when it passed MAX_STDIN (the rest is still on fd 0), -1 on an
 * error (what was read is in ``in``). */
static int read_stdin(struct buf *in)
{
    for (;;) {
        if (buf_reserve(in, 65536, MAX_STDIN) != 0)
            return in->len + 65536 > MAX_STDIN ? 1 : -1;
        ssize_t r = read(0, in->data + in->len, 65536);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            return 0;
        in->len += (size_t)r;
    }
}

static void put_json_string(struct buf *b, const char *s, size_t n);

/* Exec the Python launcher with the same arguments and environment.  When stdin was consumed
 * (``consumed``), it is replayed from a memfd holding what was read plus, when ``rest``, whatever
 * fd 0 still has.  Never returns. */
static void fallback(char **argv, const struct buf *in, int consumed, int rest)
{
    if (consumed) {
        int fd = memfd_create("netkit-stdin", MFD_CLOEXEC);
        if (fd < 0 || write_all(fd, in->data, in->len, 0) != 0)
            goto broken;
        while (rest) {
            unsigned char chunk[65536];
            ssize_t r = read(0, chunk, sizeof chunk);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                goto broken;
            if (r == 0)
                break;
            if (write_all(fd, chunk, (size_t)r, 0) != 0)
                goto broken;
        }
        /* dup2 leaves the new fd 0 without CLOEXEC: the Python launcher reads it after the exec. */
        if (lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) != 0)
            goto broken;
        close(fd);
    }
    /* argv[0] names the program run, as a runtime's exec does; the Python launcher knows its
     * plugin from its own text, not from argv[0]. */
    argv[0] = (char *)NETKIT_FALLBACK;
    execve(NETKIT_FALLBACK, argv, environ);
broken:;
    /* Nothing was written to stdout yet: a CNI error there is what the runtime reads.  Where the
     * Python launcher is missing by design -- a Kubernetes node, whose launchers were built in the
     * netkit image and whose agent container serves them -- this is an agent restarting: code 11,
     * the spec's "try again later", and kubelet retries the pod. */
    int err = errno;
    char details[1024];
    int n = snprintf(details, sizeof details, "%s: %s (the agent serves this request where the Python launcher "
                     "is absent: on a Kubernetes node, the netkit DaemonSet's agent container)",
                     NETKIT_FALLBACK, strerror(err));
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof details ? sizeof details - 1 : (size_t)n;
    fprintf(stderr, "netkit launcher: cannot run %s: %s\n", NETKIT_FALLBACK, strerror(err));
    static const char head[] = "{\"code\":11,\"msg\":\"netkit launcher: no agent served the request and "
                               "the Python launcher cannot run\",\"details\":";
    struct buf out = {0};
    if (buf_reserve(&out, sizeof head + 6 * len + 4, MAX_STDOUT) == 0) {
        buf_put(&out, head, sizeof head - 1);
        put_json_string(&out, details, len);
        buf_put(&out, "}\n", 2);
        (void)write_all(1, out.data, out.len, 0);
    }
    _exit(1);
}

/* True when every environment string is plain ASCII (the Python client escapes the rest; not here). */
static int env_is_ascii(size_t *count)
{
    size_t n = 0;
    for (char **e = environ; *e != NULL; e++, n++)
        for (const unsigned char *p = (const unsigned char *)*e; *p; p++)
            if (*p >= 0x80)
                return 0;
    *count = n;
    return 1;
}

/* ``s`` (``n`` bytes) as a JSON string literal, exactly as client.json_string writes ASCII text.
 * The caller reserved 6 * n + 2 bytes. */
static void put_json_string(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (esc != NULL) {
            *o++ = (unsigned char)esc[0];
            *o++ = (unsigned char)esc[1];
        } else if (c >= 0x20 && c < 0x7f) {
            *o++ = c;
        } else {
            *o++ = '\\';
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = (unsigned char)hex[c >> 4];
            *o++ = (unsigned char)hex[c & 0xf];
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
}

/* Append key:value to the header, reserving first; -1 past MAX_HEADER. */
static int put_pair(struct buf *h, int comma, const char *key, size_t klen, const char *val, size_t vlen)
{
    if (klen > MAX_HEADER / 8 || vlen > MAX_HEADER / 8)
        return -1;
    if (buf_reserve(h, 6 * (klen + vlen) + 6, MAX_HEADER) != 0)
        return -1;
    if (comma)
        buf_put(h, ",", 1);
    put_json_string(h, key, klen);
    buf_put(h, ":", 1);
    put_json_string(h, val, vlen);
    return 0;
}

/* The request header: the compiled-in prefix, then the environment in environ's order (os.environ's:
 * an entry without '=' is skipped, a repeated name keeps its first value), CNI_NETNS under
 * /proc/self/ or /proc/thread-self/ rewritten to this pid; 0, or -1 when it would pass the bounds. */
static int build_header(struct buf *h)
{
    static const char prefix[] = NETKIT_HEADER_PREFIX;
    if (buf_reserve(h, sizeof prefix - 1, MAX_HEADER) != 0)
        return -1;
    buf_put(h, prefix, sizeof prefix - 1);
    int comma = 0;
    char netns[4096 + 64];
    for (char **e = environ; *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        size_t klen = (size_t)(eq - *e);
        int seen = 0;
        for (char **p = environ; p != e && !seen; p++)
            seen = strncmp(*p, *e, klen + 1) == 0;
        if (seen)
            continue;
        const char *val = eq + 1;
        size_t vlen = strlen(val);
        if (klen == 9 && memcmp(*e, "CNI_NETNS", 9) == 0) {
            /* "self" would be the agent there: name this process, alive until the answer. */
            static const char *const links[] = {"/proc/self/", "/proc/thread-self/"};
            for (size_t i = 0; i < 2; i++) {
                size_t l = strlen(links[i]);
                if (strncmp(val, links[i], l) == 0) {
                    int n = snprintf(netns, sizeof netns, "/proc/%ld/%s", (long)getpid(), val + l);
                    if (n < 0 || (size_t)n >= sizeof netns)
                        return -1;
                    val = netns;
                    vlen = (size_t)n;
                    break;
                }
            }
        }
        if (put_pair(h, comma, *e, klen, val, vlen) != 0)
            return -1;
        comma = 1;
    }
    if (buf_reserve(h, 2, MAX_HEADER) != 0)
        return -1;
    buf_put(h, "}}", 2);
    return 0;
}

static int recv_all(int sock, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(sock, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1; /* an error, a timeout, or the agent closed the connection */
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* One exchange with the agent: 0 with (*code, *out) when it answered, -1 for a fallback. */
static int exchange(const struct buf *header, const struct buf *in, int *code, struct buf *out)
{
    const char *path = getenv("NETKIT_AGENT_SOCKET");
    if (path == NULL || *path == '\0')
        path = NETKIT_SOCKET;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path)
        return -1; /* the Python client cannot reach it either: it answers in-process */
    memcpy(addr.sun_path, path, strlen(path));

    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return -1;
    int ok = -1;
    int netns = -1;
    struct timeval tv = {.tv_sec = TIMEOUT_S, .tv_usec = 0};
    if (setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        goto out;
    if (connect(sock, (const struct sockaddr *)&addr, sizeof addr) != 0)
        goto out; /* no agent, or a stale socket file */
    netns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (netns < 0)
        goto out;

    /* The 8-byte head carries the caller's network namespace (SCM_RIGHTS), as protocol.send_request. */
    unsigned char head[8];
    put_be32(head, (uint32_t)header->len);
    put_be32(head + 4, (uint32_t)in->len);
    struct iovec iov = {.iov_base = head, .iov_len = sizeof head};
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                         .msg_controllen = sizeof control.space};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &netns, sizeof netns);
    ssize_t sent;
    do
        sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent < 0)
        goto out;
    if ((size_t)sent < sizeof head && write_all(sock, head + sent, sizeof head - (size_t)sent, 1) != 0)
        goto out;
    if (write_all(sock, header->data, header->len, 1) != 0 || write_all(sock, in->data, in->len, 1) != 0)
        goto out;

    unsigned char reply[8];
    if (recv_all(sock, reply, sizeof reply) != 0)
        goto out;
    uint32_t raw = get_be32(reply);
    /* Signed, as "!i" reads it; converted without relying on implementation-defined casts. */
    int status = raw <= INT32_MAX ? (int)raw : -(int)(UINT32_MAX - raw) - 1;
    uint32_t length = get_be32(reply + 4);
    if (status == NOT_SERVED || status == OTHER_VERSION || length > MAX_STDOUT)
        goto out; /* the Python launcher runs it (and replaces an agent of another version) */
    if (buf_reserve(out, length, MAX_STDOUT) != 0 || recv_all(sock, out->data, length) != 0)
        goto out;
    out->len = length;
    *code = status;
    ok = 0;
out:
    if (netns >= 0)
        close(netns);
    close(sock);
    return ok;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; /* bytes.strip() */
}

/* [*p, *end) without surrounding whitespace, as bytes.strip() leaves it. */
static void strip(const unsigned char **p, const unsigned char **end)
{
    while (*p < *end && is_space(**p))
        (*p)++;
    while (*end > *p && is_space((*end)[-1]))
        (*end)--;
}

/* Is [v, v+n) one of NETKIT_SUPPORTED (comma-separated)? */
static int supported(const unsigned char *v, size_t n)
{
    const char *list = NETKIT_SUPPORTED;
    while (*list) {
        size_t len = strcspn(list, ",");
        if (len == n && memcmp(list, v, n) == 0)
            return 1;
        list += len + (list[len] == ',');
    }
    return 0;
}

/* VERSION answered here with the agent off (in-process, no interpreter): the answer is a constant of this
 * installation, and a runtime asks it of every plugin whenever it loads a network (~23 ms through
 * the interpreter, measured, against ~2 ms for the reference plugins).  Only the plain form libcni
 * sends, {"cniVersion":"X"} with any whitespace between the tokens, exactly as cni/handler.py's
 * asked_version reads it; the answer byte for byte its version_text.  Anything else: -1, and the
 * Python launcher reads it as JSON. */
static int version_reply(const struct buf *in, struct buf *out)
{
    const unsigned char *p = in->data, *end = in->data + in->len;
    if (in->len == 0)
        return -1;
    strip(&p, &end);
    if (end - p < 2 || *p != '{' || end[-1] != '}')
        return -1;
    p++, end--;
    const unsigned char *colon = memchr(p, ':', (size_t)(end - p));
    if (colon == NULL)
        return -1;
    const unsigned char *key = p, *key_end = colon, *val = colon + 1, *val_end = end;
    strip(&key, &key_end);
    strip(&val, &val_end);
    if (key_end - key != 12 || memcmp(key, "\"cniVersion\"", 12) != 0)
        return -1;
    if (val_end - val < 2 || *val != '"' || val_end[-1] != '"')
        return -1;
    val++, val_end--;
    size_t n = (size_t)(val_end - val);
    if (memchr(val, '"', n) != NULL || memchr(val, '\\', n) != NULL)
        return -1;
    const unsigned char *asked = (const unsigned char *)NETKIT_LATEST;
    size_t asked_len = strlen(NETKIT_LATEST);
    if (supported(val, n))
        asked = val, asked_len = n;
    static const char head[] = "{\n  \"cniVersion\": \"", mid[] = "\",\n  \"supportedVersions\": [\n",
                      tail[] = "\n  ]\n}\n";
    const char *list = NETKIT_SUPPORTED;
    if (buf_reserve(out, sizeof head + asked_len + sizeof mid + 8 * strlen(list) + sizeof tail, MAX_STDOUT) != 0)
        return -1;
    buf_put(out, head, sizeof head - 1);
    buf_put(out, asked, asked_len);
    buf_put(out, mid, sizeof mid - 1);
    for (int first = 1; *list; first = 0) {
        size_t len = strcspn(list, ",");
        if (!first)
            buf_put(out, ",\n", 2);
        buf_put(out, "    \"", 5);
        buf_put(out, list, len);
        buf_put(out, "\"", 1);
        list += len + (list[len] == ',');
    }
    buf_put(out, tail, sizeof tail - 1);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    struct buf in = {0}, header = {0}, out = {0};
    /* No socket contact for what only the Python launcher does: "about" (no CNI_COMMAND), the agent
     * turned off, an environment the Python client would escape beyond ASCII. */
    const char *command = getenv("CNI_COMMAND");
    const char *mode = getenv("NETKIT_AGENT");
    size_t entries = 0;
    int agent_off = mode != NULL && strcmp(mode, "off") == 0;
    /* With the agent on, VERSION goes to it like any request (~1 ms), or to the Python launcher,
     * which starts one when none answers: the first exec a runtime makes may well be a VERSION. */
    if (agent_off && command != NULL && strcmp(command, "VERSION") == 0 && marker[0] != '\0') {
        int more = read_stdin(&in);
        if (more != 0)
            fallback(argv, &in, 1, more == 1);
        if (version_reply(&in, &out) != 0)
            fallback(argv, &in, 1, 0);
        if (write_all(1, out.data, out.len, 0) != 0)
            _exit(1);
        _exit(0);
    }
    if (command == NULL || *command == '\0' || agent_off ||
        !env_is_ascii(&entries) || entries > MAX_ENV_ENTRIES || marker[0] == '\0')
        fallback(argv, &in, 0, 0);
    int more = read_stdin(&in);
    if (more != 0)
        fallback(argv, &in, 1, more == 1);
    int code = 0;
    if (build_header(&header) != 0 || exchange(&header, &in, &code, &out) != 0)
        fallback(argv, &in, 1, 0);
    /* Answered: the Python launcher's os._exit(code) after writing stdout, nothing else. */
    if (out.len > 0 && write_all(1, out.data, out.len, 0) != 0)
        _exit(1);
    _exit(code);
}
