/* The raw-TCP floor for the bus benchmark: the same length-prefixed frames over a
 * loopback TCP connection with plain blocking sockets and no encoding at all.
 *
 *   raw_tcp_floor blast FRAME_BYTES COUNT     one-way throughput, prints frames/s
 *   raw_tcp_floor pingpong FRAME_BYTES COUNT  round trips, prints each RTT in us
 *
 * Output is one JSON object on stdout. Receiver and sender are two threads.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static void full_read(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) { perror("read"); exit(1); }
        p += r; n -= (size_t)r;
    }
}

static int listener, frame_bytes, count, pingpong;

static void *receiver(void *arg) {
    (void)arg;
    int fd = accept(listener, NULL, NULL);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char *buf = malloc((size_t)frame_bytes + 4);
    for (int i = 0; i < count; i++) {
        uint32_t len;
        full_read(fd, &len, 4);
        len = ntohl(len);
        full_read(fd, buf, len);
        if (pingpong) { uint32_t be = htonl(len); full_write(fd, &be, 4); full_write(fd, buf, len); }
    }
    if (!pingpong) full_write(fd, "k", 1);
    free(buf);
    close(fd);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s blast|pingpong FRAME_BYTES COUNT\n", argv[0]); return 2; }
    pingpong = strcmp(argv[1], "pingpong") == 0;
    frame_bytes = atoi(argv[2]);
    count = atoi(argv[3]);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    listener = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t alen = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1)) { perror("bind"); return 1; }
    getsockname(listener, (struct sockaddr *)&addr, &alen);
    pthread_t t;
    pthread_create(&t, NULL, receiver, NULL);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr)) { perror("connect"); return 1; }
    char *frame = calloc(1, (size_t)frame_bytes + 4);
    *(uint32_t *)frame = htonl((uint32_t)frame_bytes);

    if (pingpong) {
        double *rtt = malloc(sizeof(double) * (size_t)count);
        char *back = malloc((size_t)frame_bytes + 4);
        for (int i = 0; i < count; i++) {
            double t0 = now_s();
            full_write(fd, frame, (size_t)frame_bytes + 4);
            full_read(fd, back, (size_t)frame_bytes + 4);
            rtt[i] = (now_s() - t0) * 1e6;
        }
        qsort(rtt, (size_t)count, sizeof(double), cmp_double);
        printf("{\"mode\":\"pingpong\",\"frame_bytes\":%d,\"count\":%d,\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f}\n",
               frame_bytes, count, rtt[count / 2], rtt[count * 9 / 10], rtt[count * 99 / 100], rtt[count - 1]);
    } else {
        double t0 = now_s();
        for (int i = 0; i < count; i++) full_write(fd, frame, (size_t)frame_bytes + 4);
        char k;
        full_read(fd, &k, 1);
        double dt = now_s() - t0;
        printf("{\"mode\":\"blast\",\"frame_bytes\":%d,\"count\":%d,\"seconds\":%.6f,\"per_second\":%.1f}\n",
               frame_bytes, count, dt, count / dt);
    }
    pthread_join(t, NULL);
    return 0;
}
