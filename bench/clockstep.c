/* A wall-clock step for one process tree, preloaded (LD_PRELOAD) into an HA agent by the
 * verification matrix: CLOCK_REALTIME, gettimeofday() and time() read the offset in seconds
 * written in the file named by CLOCKSTEP_FILE (re-read at most once a second); the monotonic
 * and boot clocks, and sleeping on them, are left alone. libfaketime was tried first: with its
 * monotonic clock left alone, Python's time.sleep() fails there with EINVAL (clock_nanosleep
 * on an absolute monotonic deadline), which crashed the agents it meant to test.
 * Postgres and its tools are not stepped: the checker reads the server's clock.
 *
 *     gcc -shared -fPIC -O2 -o clockstep.so clockstep.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

typedef int (*clock_fn)(clockid_t, struct timespec *);

static clock_fn real_clock(void) {
    static clock_fn real;
    if (!real)
        real = (clock_fn)dlsym(RTLD_NEXT, "clock_gettime");
    return real;
}

static int exempt(void) {
    static int known = -1;
    if (known < 0) {
        const char *name = program_invocation_short_name;
        known = strncmp(name, "postgres", 8) == 0 || strncmp(name, "pg_", 3) == 0 || strcmp(name, "initdb") == 0;
    }
    return known;
}

static long offset(void) {
    static long cached;
    static time_t read_at = -1;
    struct timespec now;
    const char *path = getenv("CLOCKSTEP_FILE");
    if (!path || exempt())
        return 0;
    real_clock()(CLOCK_MONOTONIC, &now);
    if (now.tv_sec != read_at) {
        int saved = errno;
        FILE *f = fopen(path, "r");
        long value = 0;
        if (f) {
            if (fscanf(f, "%ld", &value) == 1)
                cached = value;
            fclose(f);
        }
        read_at = now.tv_sec;
        errno = saved;
    }
    return cached;
}

int clock_gettime(clockid_t clk, struct timespec *tp) {
    int r = real_clock()(clk, tp);
    if (r == 0 && (clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE))
        tp->tv_sec += offset();
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return -1;
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t)
        *t = ts.tv_sec;
    return ts.tv_sec;
}
