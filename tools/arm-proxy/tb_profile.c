/*
tb_profile.c — a QEMU TCG plugin for tools/arm-proxy: counts how many times
each translated block of guest code runs, so that instructions executed can
be counted exactly (sum of runs x instructions) and attributed to functions,
and each hot block's instructions handed to llvm-mca. It is a measuring tool
for user-mode qemu (qemu-aarch64), not part of any runtime, and it knows
nothing of the programs it watches.

Built as a shared object by tools/arm-proxy (cc -shared -fPIC) and loaded
with `qemu-aarch64 -plugin build/arm-proxy/tb_profile.so,out=FILE PROGRAM`.
At exit it writes FILE, one line per block:

    vaddr n_insns runs symbol hex-bytes-of-the-block

Counting uses an inline add per block run (no callback), so it costs little;
the adds are not atomic, so profile single-threaded runs (runq -T 1).

QEMU ships no header for its plugin API in Debian; the few declarations used
are written out below from the API's documentation (plugin API version 1,
QEMU 4.2 to 8.x: Debian 12's qemu-user 7.2). A QEMU that refuses the plugin
says so at start, and tools/arm-proxy stops with that message.
*/
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- the plugin API (QEMU's include/qemu/qemu-plugin.h, version 1)
#define PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;   // only passed through
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
const char *qemu_plugin_insn_symbol(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);
PLUGIN_EXPORT int qemu_plugin_version = 1;

// ---- blocks, by (start address, length): a block translated again reuses its counter
typedef struct Block {
    uint64_t vaddr, runs;
    size_t n_insns, n_bytes;
    char *symbol;
    uint8_t *bytes;
    struct Block *next;
} Block;

#define N_BUCKETS (1 << 16)
static Block *buckets[N_BUCKETS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *out_path;

static Block *find_or_add(const struct qemu_plugin_tb *tb) {
    uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
    size_t n_insns = qemu_plugin_tb_n_insns(tb);
    Block **bucket = &buckets[(vaddr >> 2) % N_BUCKETS];
    for (Block *b = *bucket; b; b = b->next)
        if (b->vaddr == vaddr && b->n_insns == n_insns) return b;
    Block *b = calloc(1, sizeof *b);
    if (!b) { qemu_plugin_outs("tb_profile: out of memory\n"); exit(1); }
    b->vaddr = vaddr;
    b->n_insns = n_insns;
    for (size_t i = 0; i < n_insns; i++) b->n_bytes += qemu_plugin_insn_size(qemu_plugin_tb_get_insn(tb, i));
    b->bytes = malloc(b->n_bytes ? b->n_bytes : 1);
    size_t at = 0;
    for (size_t i = 0; i < n_insns; i++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        memcpy(b->bytes + at, qemu_plugin_insn_data(insn), qemu_plugin_insn_size(insn));
        at += qemu_plugin_insn_size(insn);
    }
    const char *symbol = n_insns ? qemu_plugin_insn_symbol(qemu_plugin_tb_get_insn(tb, 0)) : NULL;
    b->symbol = strdup(symbol && *symbol ? symbol : "?");
    b->next = *bucket;
    *bucket = b;
    return b;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    pthread_mutex_lock(&lock);
    Block *b = find_or_add(tb);
    pthread_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->runs, 1);
}

static void write_profile(qemu_plugin_id_t id, void *userdata) {
    (void)id; (void)userdata;
    FILE *f = fopen(out_path, "w");
    if (!f) { qemu_plugin_outs("tb_profile: cannot write the profile\n"); return; }
    for (int i = 0; i < N_BUCKETS; i++)
        for (Block *b = buckets[i]; b; b = b->next) {
            if (!b->runs) continue;
            fprintf(f, "%" PRIx64 " %zu %" PRIu64 " %s ", b->vaddr, b->n_insns, b->runs, b->symbol);
            for (size_t j = 0; j < b->n_bytes; j++) fprintf(f, "%02x", b->bytes[j]);
            fputc('\n', f);
        }
    fclose(f);
}

PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "out=", 4) == 0) out_path = strdup(argv[i] + 4);
    if (!out_path) { qemu_plugin_outs("tb_profile: give out=FILE\n"); return 1; }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_profile, NULL);
    return 0;
}
