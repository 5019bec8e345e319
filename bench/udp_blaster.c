/*
 * udp_blaster: closed-loop UDP load generator for bench/reflector_throughput.py.
 *
 * Keeps WINDOW valid 44-octet STAMP Session-Sender test packets (RFC 8762 section 4.2.1,
 * unauthenticated) in flight towards one server: it sends the window with sendmmsg, then
 * for every reply it reads (recvmmsg, in batches) it sends one new request. When no reply
 * arrives for TIMEOUT_MS the packets in flight are counted as lost and the window is sent
 * again, so drops cannot stall the run. Replies are counted over SECONDS after a WARMUP.
 *
 * Usage: udp_blaster ADDRESS PORT [-w WINDOW] [-s SECONDS] [-W WARMUP] [-b BATCH] [-t TIMEOUT_MS]
 * Prints one JSON object: sent, replies (whole run), measured_replies, measured_seconds,
 * pps, timeouts, bad_replies (wrong length), cpu_seconds (this process, user + system).
 *
 * Build: gcc -O2 -Wall -o udp_blaster udp_blaster.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PKT_LEN 44
#define MAX_BATCH 256
#define RX_LEN 2048

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* NTP timestamp (RFC 5905): seconds since 1900 and a 32-bit binary fraction. */
static void put_ntp_now(uint8_t *p) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint32_t sec = (uint32_t)(ts.tv_sec + 2208988800UL);
    uint32_t frac = (uint32_t)(((uint64_t)ts.tv_nsec << 32) / 1000000000ULL);
    sec = htonl(sec);
    frac = htonl(frac);
    memcpy(p, &sec, 4);
    memcpy(p + 4, &frac, 4);
}

static uint8_t tx_buf[MAX_BATCH][PKT_LEN];
static uint8_t rx_buf[MAX_BATCH][RX_LEN];
static struct iovec tx_iov[MAX_BATCH], rx_iov[MAX_BATCH];
static struct mmsghdr tx_msg[MAX_BATCH], rx_msg[MAX_BATCH];
static uint32_t next_seq;
static uint16_t ssid;
static long long sent_total;

/* Send n requests (n <= MAX_BATCH); returns how many the kernel took. */
static int send_requests(int fd, int n) {
    for (int i = 0; i < n; i++) {
        uint8_t *p = tx_buf[i];
        memset(p, 0, PKT_LEN);
        uint32_t seq = htonl(next_seq + i);
        memcpy(p, &seq, 4);            /* Sequence Number */
        put_ntp_now(p + 4);            /* Timestamp (NTP) */
        p[12] = 0x00;                  /* Error Estimate: S=0 Z=0 Scale=0 */
        p[13] = 0x01;                  /*                 Multiplier=1 */
        p[14] = ssid >> 8;             /* SSID (RFC 8972) */
        p[15] = ssid & 0xff;
        /* octets 16..43: MBZ */
    }
    int done = 0;
    while (done < n) {
        int r = sendmmsg(fd, tx_msg + done, n - done, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED) break;
            perror("sendmmsg");
            exit(2);
        }
        done += r;
    }
    next_seq += done;
    sent_total += done;
    return done;
}

static void usage(void) {
    fprintf(stderr, "usage: udp_blaster ADDRESS PORT [-w WINDOW] [-s SECONDS] [-W WARMUP] [-b BATCH] [-t TIMEOUT_MS]\n");
    exit(64);
}

int main(int argc, char **argv) {
    if (argc < 3) usage();
    const char *address = argv[1];
    int port = atoi(argv[2]);
    int window = 64, batch = 64, timeout_ms = 20;
    double seconds = 3.0, warmup = 0.5;
    for (int i = 3; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "-w")) window = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s")) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "-W")) warmup = atof(argv[++i]);
        else if (!strcmp(argv[i], "-b")) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t")) timeout_ms = atoi(argv[++i]);
        else usage();
    }
    if (window < 1 || batch < 1 || batch > MAX_BATCH || seconds <= 0 || warmup < 0) usage();

    struct sockaddr_storage dst;
    socklen_t dst_len;
    memset(&dst, 0, sizeof dst);
    int family;
    if (strchr(address, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&dst;
        s6->sin6_family = family = AF_INET6;
        s6->sin6_port = htons(port);
        if (inet_pton(AF_INET6, address, &s6->sin6_addr) != 1) usage();
        dst_len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&dst;
        s4->sin_family = family = AF_INET;
        s4->sin_port = htons(port);
        if (inet_pton(AF_INET, address, &s4->sin_addr) != 1) usage();
        dst_len = sizeof *s4;
    }
    int fd = socket(family, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 2; }
    int rcvbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (connect(fd, (struct sockaddr *)&dst, dst_len) < 0) { perror("connect"); return 2; }

    for (int i = 0; i < MAX_BATCH; i++) {
        tx_iov[i].iov_base = tx_buf[i];
        tx_iov[i].iov_len = PKT_LEN;
        tx_msg[i].msg_hdr.msg_iov = &tx_iov[i];
        tx_msg[i].msg_hdr.msg_iovlen = 1;
        rx_iov[i].iov_base = rx_buf[i];
        rx_iov[i].iov_len = RX_LEN;
        rx_msg[i].msg_hdr.msg_iov = &rx_iov[i];
        rx_msg[i].msg_hdr.msg_iovlen = 1;
    }
    ssid = (uint16_t)(getpid() & 0xffff);

    long long replies = 0, bad = 0, timeouts = 0, at_start = -1;
    double start = now_s(), measure_from = start + warmup, end = measure_from + seconds, t_start = 0, t = start;
    int inflight = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    while (t < end) {
        while (inflight < window) {
            int want = window - inflight;
            if (want > batch) want = batch;
            int got = send_requests(fd, want);
            inflight += got;
            if (got < want) break;
        }
        int ready = poll(&pfd, 1, timeout_ms);
        t = now_s();
        if (at_start < 0 && t >= measure_from) {
            at_start = replies;
            t_start = t;
        }
        if (ready < 0) {
            if (errno == EINTR) continue;
            perror("poll");
            return 2;
        }
        if (ready == 0) {  /* the window was lost (drops at the server): send a fresh one */
            timeouts++;
            inflight = 0;
            continue;
        }
        int n = recvmmsg(fd, rx_msg, batch, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED) continue;
            perror("recvmmsg");
            return 2;
        }
        for (int i = 0; i < n; i++) {
            if (rx_msg[i].msg_len == PKT_LEN) replies++;
            else bad++;
        }
        inflight -= n;
        if (inflight < 0) inflight = 0;
    }
    if (at_start < 0) { at_start = replies; t_start = t; }
    double measured_s = t - t_start;
    long long measured = replies - at_start;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("{\"sent\": %lld, \"replies\": %lld, \"measured_replies\": %lld, \"measured_seconds\": %.6f, "
           "\"pps\": %.1f, \"timeouts\": %lld, \"bad_replies\": %lld, \"cpu_seconds\": %.4f, "
           "\"wall_seconds\": %.4f, \"window\": %d}\n",
           sent_total, replies, measured, measured_s, measured_s > 0 ? measured / measured_s : 0.0,
           timeouts, bad, cpu, t - start, window);
    close(fd);
    return 0;
}
