/* The raw-TCP floors for the bus benchmark: the same length-prefixed frames over a loopback TCP
 * connection with plain blocking sockets and no encoding at all. Sender and receiver are two
 * threads; the main thread only keeps time.
 *
 *   raw_tcp_floor blast    FRAME_BYTES SECONDS WARMUP   one write per frame; the receiver reads
 *                                                       each header, then each payload
 *   raw_tcp_floor batched  FRAME_BYTES SECONDS WARMUP   writev of many frames (up to 64 KiB or
 *                                                       IOV_MAX of them); 64 KiB reads, the
 *                                                       receiver walks the frame headers
 *   raw_tcp_floor pingpong FRAME_BYTES SECONDS WARMUP   round trips, one at a time
 *
 * Every figure covers SECONDS after WARMUP seconds of the same traffic (the connection is open
 * and warm). Output is one JSON object on stdout: frames per second (or RTT percentiles), and
 * per frame (per round trip for pingpong): CPU microseconds of the whole process (getrusage),
 * context switches, minor page faults, and allocations when libmalloc_count.so is preloaded (null otherwise).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void full_write(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) { perror("write"); exit(1); }
        p += w; n -= (size_t)w;
    }
}

/* 0 at a clean end of stream before any byte, else exits on a short read. */
static int full_read(int fd, void *buf, size_t n) {
    char *p = buf;
    size_t want = n;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r == 0 && n == want) return 0;
        if (r <= 0) { perror("read"); exit(1); }
        p += r; n -= (size_t)r;
    }
    return 1;
}

enum { BLAST, BATCHED, PINGPONG };
static int listener, mode, frame_bytes;
static volatile int stop, measuring;
static uint64_t received;          /* frames (round trips for pingpong), written by one thread */
static double *rtt;
static size_t rtt_count, rtt_capacity;

static void tcp_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void *receiver(void *arg) {
    (void)arg;
    int fd = accept(listener, NULL, NULL);
    tcp_nodelay(fd);
    if (mode == BATCHED) {
        /* 64 KiB reads; walk the headers, carrying a header or payload across reads. */
        size_t cap = 64 * 1024;
        unsigned char *buf = malloc(cap);
        size_t need = 4, have_header = 0;  /* bytes still wanted of the current header/payload */
        unsigned char header[4];
        int in_payload = 0;
        for (;;) {
            ssize_t r = read(fd, buf, cap);
            if (r == 0) break;
            if (r < 0) { perror("read"); exit(1); }
            size_t i = 0, n = (size_t)r;
            uint64_t frames = 0;
            while (i < n) {
                if (in_payload) {
                    size_t take = n - i < need ? n - i : need;
                    i += take; need -= take;
                    if (need == 0) { in_payload = 0; need = 4; have_header = 0; frames++; }
                } else {
                    while (i < n && have_header < 4) header[have_header++] = buf[i++];
                    if (have_header == 4) {
                        uint32_t len;
                        memcpy(&len, header, 4);
                        need = ntohl(len);
                        in_payload = 1;
                    }
                }
            }
            __atomic_store_n(&received, received + frames, __ATOMIC_RELAXED);
        }
        free(buf);
    } else {
        char *buf = malloc((size_t)frame_bytes + 4);
        for (;;) {
            uint32_t len;
            if (!full_read(fd, &len, 4)) break;
            len = ntohl(len);
            full_read(fd, buf, len);
            if (mode == PINGPONG) { uint32_t be = htonl(len); full_write(fd, &be, 4); full_write(fd, buf, len); }
            else __atomic_store_n(&received, received + 1, __ATOMIC_RELAXED);
        }
        free(buf);
    }
    close(fd);
    return NULL;
}

static int sender_fd;

static void *sender(void *arg) {
    (void)arg;
    int fd = sender_fd;
    size_t size = (size_t)frame_bytes + 4;
    char *frame = calloc(1, size);
    *(uint32_t *)frame = htonl((uint32_t)frame_bytes);
    if (mode == PINGPONG) {
        char *back = malloc(size);
        while (!stop) {
            double t0 = now_s();
            full_write(fd, frame, size);
            full_read(fd, back, size);
            double us = (now_s() - t0) * 1e6;
            if (measuring && rtt_count < rtt_capacity) {
                rtt[rtt_count++] = us;
                __atomic_store_n(&received, received + 1, __ATOMIC_RELAXED);
            }
        }
        free(back);
    } else if (mode == BATCHED) {
        int per = (int)((64 * 1024) / size);
        if (per < 1) per = 1;
        if (per > IOV_MAX) per = IOV_MAX;
        struct iovec *iov = malloc(sizeof *iov * (size_t)per);
        for (int i = 0; i < per; i++) iov[i] = (struct iovec){.iov_base = frame, .iov_len = size};
        size_t total = size * (size_t)per;
        while (!stop) {
            /* writev, then finish a partial write frame by frame */
            ssize_t w = writev(fd, iov, per);
            if (w <= 0) { perror("writev"); exit(1); }
            size_t done = (size_t)w;
            if (done < total) {
                size_t into = done % size;
                if (into) full_write(fd, frame + into, size - into);
                for (size_t k = done / size + (into ? 1 : 0); k < (size_t)per; k++) full_write(fd, frame, size);
            }
        }
        free(iov);
    } else {
        while (!stop) full_write(fd, frame, size);
    }
    shutdown(fd, SHUT_WR);
    free(frame);
    return NULL;
}

struct sample { double t, cpu_us; long csw, minflt; uint64_t count, allocs; };
static uint64_t (*allocations)(void);

static struct sample take(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct sample s = {
        .t = now_s(),
        .cpu_us = ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec,
        .csw = ru.ru_nvcsw + ru.ru_nivcsw,
        .minflt = ru.ru_minflt,
        .count = __atomic_load_n(&received, __ATOMIC_RELAXED),
        .allocs = allocations ? allocations() : 0,
    };
    return s;
}

static void sleep_s(double s) {
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {}
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s blast|batched|pingpong FRAME_BYTES SECONDS WARMUP\n", argv[0]); return 2; }
    mode = strcmp(argv[1], "pingpong") == 0 ? PINGPONG : strcmp(argv[1], "batched") == 0 ? BATCHED : BLAST;
    frame_bytes = atoi(argv[2]);
    double seconds = atof(argv[3]), warmup = atof(argv[4]);
    allocations = (uint64_t (*)(void))dlsym(RTLD_DEFAULT, "malloc_count_allocations");
    if (mode == PINGPONG) {
        rtt_capacity = (size_t)(seconds * 1e6 / 2) + 1;  /* more than one round trip every 2 us */
        rtt = malloc(sizeof(double) * rtt_capacity);
    }

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    listener = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t alen = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1)) { perror("bind"); return 1; }
    getsockname(listener, (struct sockaddr *)&addr, &alen);
    pthread_t rt, st;
    pthread_create(&rt, NULL, receiver, NULL);
    sender_fd = socket(AF_INET, SOCK_STREAM, 0);
    tcp_nodelay(sender_fd);
    if (connect(sender_fd, (struct sockaddr *)&addr, sizeof addr)) { perror("connect"); return 1; }
    pthread_create(&st, NULL, sender, NULL);

    sleep_s(warmup);
    measuring = 1;
    struct sample a = take();
    sleep_s(seconds);
    struct sample b = take();
    measuring = 0;
    stop = 1;
    pthread_join(st, NULL);
    pthread_join(rt, NULL);

    double n = (double)(b.count - a.count), dt = b.t - a.t;
    char allocs[32] = "null";
    if (allocations) snprintf(allocs, sizeof allocs, "%.3f", (double)(b.allocs - a.allocs) / n);
    printf("{\"mode\":\"%s\",\"frame_bytes\":%d,\"count\":%.0f,\"seconds\":%.3f,\"per_second\":%.1f,"
           "\"cpu_us_per_msg\":%.3f,\"csw_per_msg\":%.4f,\"minflt_per_msg\":%.4f,\"allocs_per_msg\":%s",
           argv[1], frame_bytes, n, dt, n / dt, (b.cpu_us - a.cpu_us) / n, (double)(b.csw - a.csw) / n, (double)(b.minflt - a.minflt) / n, allocs);
    if (mode == PINGPONG) {
        size_t c = rtt_count;
        qsort(rtt, c, sizeof(double), cmp_double);
        printf(",\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f", rtt[c / 2], rtt[c * 9 / 10], rtt[c * 99 / 100], rtt[c - 1]);
    }
    printf("}\n");
    return 0;
}
