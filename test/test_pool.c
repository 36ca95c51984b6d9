// test_pool.c — the thread pool under stress: many tiny tasks, pauses that
// send the workers (and the caller) to sleep, thread counts above the core
// count. Every task must run on every thread exactly once, and nothing may
// hang: a watchdog turns a lost wake-up into a failure.
// Not a benchmark: timing is never a test here.
#define TESTING
#include "../runq.c"
#include "check.h"
#include <signal.h>

typedef struct {
    atomic_long *runs;       // (n_threads,) tasks each thread ran
    int delay_thread;        // this thread dawdles, so the caller must wait (and may sleep)
} StressArg;

static void stress_task(void *raw, int thread_index, int n_threads) {
    StressArg *arg = raw;
    (void)n_threads;
    if (thread_index == arg->delay_thread) for (volatile int i = 0; i < 2000; i++) {}
    atomic_fetch_add(&arg->runs[thread_index], 1);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char message[] = "FAIL: thread pool hung (lost wake-up?)\ntest_pool: 0 passed, 1 failed\n";
    if (write(STDERR_FILENO, message, sizeof message - 1) < 0) _exit(2);
    _exit(1);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20000;
    signal(SIGALRM, on_alarm);
    alarm(120);
    for (int threads = 1; threads <= 4; threads++) {
        atomic_long runs[4] = { 0 };
        ThreadPool *pool = pool_create(threads);
        for (int k = 0; k < rounds; k++) {
            StressArg arg = { runs, k % threads };
            pool_run(pool, stress_task, &arg);
            if (k % 500 == 0) usleep(300);   // idle long enough for every thread to go to sleep
        }
        pool_free(pool);
        int exact = 1;
        for (int i = 0; i < threads; i++) exact &= runs[i] == rounds;
        CHECK(exact, "%d threads: a thread ran a task other than once per round (%ld rounds)", threads, (long)rounds);
    }
    return check_summary("test_pool");
}
