// test_pool.c — the thread pool under stress: many tiny tasks, pauses that
// send the workers (and the caller) to sleep, thread counts above the core
// count. Every piece of a task must run exactly once, never two at a time
// under one thread index, and nothing may hang: a watchdog turns a lost
// wake-up into a failure. A worker that sleeps inside a piece (a thread the
// OS has descheduled) must hold up only that piece: the others take the rest
// of its share. Not a benchmark: timing is never a test here.
#define TESTING
#include "../runq.c"
#include "check.h"
#include <signal.h>

typedef struct {
    atomic_long *runs;       // (n_threads,) slices each index ran
    int delay_thread;        // this slice dawdles, so the caller must wait (and may sleep)
} StressArg;

static void stress_task(void *raw, int slice, int n_slices) {
    StressArg *arg = raw;
    (void)n_slices;
    if (slice == arg->delay_thread) for (volatile int i = 0; i < 2000; i++) {}
    atomic_fetch_add(&arg->runs[slice], 1);
}

#define MAX_CHUNKS 1000
typedef struct {
    atomic_int runs[MAX_CHUNKS];      // times each piece ran
    atomic_int in_use[8];             // a thread index running a piece now
    atomic_int overlaps;              // a thread index found in use: two threads shared it
    atomic_int bad_index;
    atomic_int by_thread[8];          // pieces each thread ran
    int n_threads;
    int with_sleeper;                 // the first worker to run a piece sleeps in it
    atomic_int sleeper;               // which thread that was (-1: none yet)
    atomic_int slept;                 // the sleeper has begun its sleep
    atomic_int caller_waited;
    int sleep_us;
} ChunkArg;

static void chunk_task(void *raw, int chunk, int thread_index) {
    ChunkArg *arg = raw;
    if (thread_index < 0 || thread_index >= arg->n_threads || chunk < 0 || chunk >= MAX_CHUNKS) {
        atomic_fetch_add(&arg->bad_index, 1);
        return;
    }
    if (atomic_exchange(&arg->in_use[thread_index], 1)) atomic_fetch_add(&arg->overlaps, 1);
    int none = -1;
    if (arg->with_sleeper && thread_index > 0 && atomic_compare_exchange_strong(&arg->sleeper, &none, thread_index)) {
        atomic_store(&arg->slept, 1);
        usleep((useconds_t)arg->sleep_us);
    } else for (volatile int i = 0; i < 200; i++) {}
    // the caller's first piece waits (up to 2 s) for a worker to be asleep in
    // one, so a worker takes part however busy the machine is
    if (arg->with_sleeper && thread_index == 0 && !atomic_exchange(&arg->caller_waited, 1))
        for (int64_t until = monotonic_ns() + 2000000000; !atomic_load(&arg->slept) && monotonic_ns() < until;) usleep(100);
    atomic_fetch_add(&arg->runs[chunk], 1);
    atomic_fetch_add(&arg->by_thread[thread_index], 1);
    atomic_store(&arg->in_use[thread_index], 0);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char message[] = "FAIL: thread pool hung (lost wake-up?)\ntest_pool: 0 passed, 1 failed\n";
    if (write(STDERR_FILENO, message, sizeof message - 1) < 0) _exit(2);
    _exit(1);
}


// The tuner on made-up step times: seconds[k] is a step's time at k
// threads (within 4 % from step to step), contended whether the pool saw
// contention. Returns the steps run at one thread out of n.
static int steps_at_one(ThreadTuner *tuner, int n, const double *seconds, int contended) {
    int at_one = 0;
    for (int i = 0; i < n; i++) {
        int threads = tuner_threads(tuner);
        at_one += threads == 1;
        tuner_step(tuner, seconds[threads] * (1 + 0.02 * (i % 3)), contended);
    }
    return at_one;
}

static void test_tuner(void) {
    const double quiet[] = { 0, 2.0, 1.0 }, busy_core[] = { 0, 1.0, 2.0 }, two_faster[] = { 0, 1.0, 0.6 };
    ThreadTuner tuner = thread_tuner(2);
    CHECK(steps_at_one(&tuner, 2000, quiet, 0) == 0, "a quiet machine: the tuner tried one thread");
    int busy = steps_at_one(&tuner, 1000, busy_core, 1);   // the quiet steps before weigh in its mean for a while
    CHECK(busy >= 900, "a busy core, one thread twice as fast: %d of 1000 steps at one thread", busy);
    steps_at_one(&tuner, 2000, two_faster, 1);   // the machine quietened: back to two
    int later = steps_at_one(&tuner, 1000, two_faster, 1);
    CHECK(later <= 20, "two threads faster again: still %d of the next 1000 steps at one", later);
    tuner = thread_tuner(2);
    int contended_but_two_win = steps_at_one(&tuner, 4000, two_faster, 1);
    CHECK(contended_but_two_win <= 100, "contention, two threads still faster: %d of 4000 steps at one", contended_but_two_win);
    // a busy core as it looks: two threads' steps mostly fast, one in four
    // many times slower (their mean the worse), and the pool seeing nothing
    tuner = thread_tuner(2);
    int tail_at_one = 0;
    for (int i = 0; i < 1000; i++) {
        int threads = tuner_threads(&tuner);
        tail_at_one += threads == 1;
        tuner_step(&tuner, threads == 1 ? 1.0 : i % 4 == 3 ? 4.0 : 0.6, 0);
    }
    CHECK(tail_at_one >= 900, "two threads fast but for one step in four: %d of 1000 steps at one thread", tail_at_one);
    tuner = thread_tuner(1);
    CHECK(steps_at_one(&tuner, 100, busy_core, 1) == 100, "-T 1: one thread throughout");
    const double two_of_four[] = { 0, 1.5, 1.0, 1.2, 3.0 };   // -T 4 on a board with two cores busy
    tuner = thread_tuner(4);
    steps_at_one(&tuner, 200, two_of_four, 1);
    CHECK(tuner_threads(&tuner) == 2, "-T 4, two threads fastest: settled at %d after 200 steps", tuner_threads(&tuner));
    printf("  tuner: a busy core, %d of 1000 steps at one thread; contended but two faster, %d of 4000\n", busy,
           contended_but_two_win);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20000;
    signal(SIGALRM, on_alarm);
    alarm(120);

    // the tools' shape: every slice 0..n_threads-1 once per task
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
        CHECK(exact, "%d threads: a slice ran other than once per round (%ld rounds)", threads, (long)rounds);
    }

    // pieces: every count from none to more than the threads, back to back and after idle spells
    static ChunkArg arg;
    int counts[] = { 0, 1, 2, 3, 7, 64, 1000 };
    for (int threads = 1; threads <= 5; threads++) {
        ThreadPool *pool = pool_create(threads);
        int wrong = 0, overlaps = 0, bad = 0;
        for (int k = 0; k < rounds / 10; k++) {
            int n = counts[k % 7];
            memset(&arg, 0, sizeof arg);
            arg.n_threads = threads;
            pool_run_chunks(pool, chunk_task, &arg, n);
            for (int c = 0; c < n; c++) wrong += atomic_load(&arg.runs[c]) != 1;
            overlaps += atomic_load(&arg.overlaps);
            bad += atomic_load(&arg.bad_index);
            if (k % 300 == 0) usleep(300);
        }
        pool_free(pool);
        CHECK(wrong == 0, "%d threads: %d pieces ran other than once", threads, wrong);
        CHECK(overlaps == 0, "%d threads: a thread index ran two pieces at once %d times", threads, overlaps);
        CHECK(bad == 0, "%d threads: %d pieces got a thread index or piece number out of range", threads, bad);
    }

    // a descheduled worker: the first worker to take a piece sleeps 50 ms in
    // it. It must run only that piece; every other piece, its own share's
    // included, is done by the others meanwhile.
    for (int threads = 2; threads <= 4; threads++) {
        ThreadPool *pool = pool_create(threads);
        int tried = 0, held_one = 0, others_did_rest = 0;
        for (int attempt = 0; attempt < 5 && tried < 3; attempt++) {
            memset(&arg, 0, sizeof arg);
            arg.n_threads = threads;
            arg.with_sleeper = 1;
            atomic_store(&arg.sleeper, -1);
            arg.sleep_us = 50000;
            pool_run_chunks(pool, chunk_task, &arg, 400);
            int sleeper = atomic_load(&arg.sleeper), sleeper_ran = sleeper > 0 ? atomic_load(&arg.by_thread[sleeper]) : 0;
            int all_once = 1;
            for (int c = 0; c < 400; c++) all_once &= atomic_load(&arg.runs[c]) == 1;
            CHECK(all_once, "%d threads, a sleeping worker: not every piece ran once", threads);
            if (sleeper_ran == 0) { usleep(1000); continue; }   // the worker had not woken up: nothing to see
            tried++;
            held_one += sleeper_ran == 1;
            int rest = 0;
            for (int i = 0; i < threads; i++) if (i != sleeper) rest += atomic_load(&arg.by_thread[i]);
            others_did_rest += rest == 399;
        }
        pool_free(pool);
        if (tried == 0) { SKIP("%d threads: the worker never woke up in time to take a piece (a very busy machine)", threads); continue; }
        CHECK(held_one == tried, "%d threads: the sleeping worker ran more than its one piece (%d of %d tasks)", threads,
              tried - held_one, tried);
        CHECK(others_did_rest == tried, "%d threads: the others did not take the sleeping worker's share (%d of %d tasks)",
              threads, tried - others_did_rest, tried);
    }
    // fewer active threads than the pool has: every piece once, on those threads alone
    for (int threads = 2; threads <= 4; threads++) {
        ThreadPool *pool = pool_create(threads);
        int wrong = 0, outside = 0;
        for (int k = 0; k < rounds / 10; k++) {
            atomic_store(&pool->active_threads, 1 + k % threads);
            memset(&arg, 0, sizeof arg);
            arg.n_threads = threads;
            pool_run_chunks(pool, chunk_task, &arg, 64);
            for (int c = 0; c < 64; c++) wrong += atomic_load(&arg.runs[c]) != 1;
            for (int i = atomic_load(&pool->active_threads); i < threads; i++) outside += atomic_load(&arg.by_thread[i]);
            if (k % 300 == 0) usleep(300);
        }
        pool_free(pool);
        CHECK(wrong == 0, "%d threads, fewer active: %d pieces ran other than once", threads, wrong);
        CHECK(outside == 0, "%d threads, fewer active: an inactive thread ran %d pieces", threads, outside);
    }
    test_tuner();

    // the default -T: the affinity list parsed, a count of at least one
    int cpus[8], n = parse_cpu_list("0-3,6\n", cpus, 8);
    CHECK(n == 5 && cpus[0] == 0 && cpus[3] == 3 && cpus[4] == 6, "Cpus_allowed_list 0-3,6: got %d CPUs", n);
    CHECK(parse_cpu_list("5", cpus, 8) == 1 && cpus[0] == 5, "Cpus_allowed_list 5");
    CHECK(parse_cpu_list("0-15", cpus, 8) == 8, "a list longer than the room: only the room's worth");
    CHECK(parse_cpu_list("x", cpus, 8) == 0, "a list that is not one: no CPUs");
    int cores = big_cores(), threads = default_run_threads();
    CHECK(cores >= 1 && threads >= 1 && threads <= cores, "big cores %d, default -T %d", cores, threads);
    printf("  this machine: %d big cores this process may use, default -T %d\n", cores, threads);
    return check_summary("test_pool");
}
