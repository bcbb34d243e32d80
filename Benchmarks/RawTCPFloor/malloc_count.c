/* Counts heap allocations for the bus benchmark (LD_PRELOAD=libmalloc_count.so), as SwiftNIO's
 * allocation benchmarks do: every malloc, calloc, realloc, posix_memalign, aligned_alloc,
 * memalign and valloc call is one allocation; frees are counted apart. The calls go on to glibc.
 *
 * Counters are per thread (no shared cache line on the hot path); malloc_count_allocations()
 * sums them. Programs find it with dlsym(RTLD_DEFAULT, "malloc_count_allocations") and report
 * "n/a" when it is absent (not preloaded).
 *
 *   gcc -O2 -shared -fPIC -o libmalloc_count.so malloc_count.c
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void __libc_free(void *);

#define SLOTS 1024
struct slot { uint64_t allocations, frees; char pad[48]; };
static struct slot slots[SLOTS + 1];          /* the last one is shared by threads beyond SLOTS */
static unsigned next_slot;
static __thread struct slot *mine __attribute__((tls_model("initial-exec")));

static inline struct slot *me(void) {
    if (__builtin_expect(mine == NULL, 0)) {
        unsigned i = __atomic_fetch_add(&next_slot, 1, __ATOMIC_RELAXED);
        mine = &slots[i < SLOTS ? i : SLOTS];
    }
    return mine;
}

static inline void counted(void) {
    struct slot *s = me();
    if (s == &slots[SLOTS]) __atomic_fetch_add(&s->allocations, 1, __ATOMIC_RELAXED);
    else __atomic_store_n(&s->allocations, s->allocations + 1, __ATOMIC_RELAXED);
}

static inline void freed(void) {
    struct slot *s = me();
    if (s == &slots[SLOTS]) __atomic_fetch_add(&s->frees, 1, __ATOMIC_RELAXED);
    else __atomic_store_n(&s->frees, s->frees + 1, __ATOMIC_RELAXED);
}

uint64_t malloc_count_allocations(void) {
    uint64_t n = 0;
    for (int i = 0; i <= SLOTS; i++) n += __atomic_load_n(&slots[i].allocations, __ATOMIC_RELAXED);
    return n;
}

uint64_t malloc_count_frees(void) {
    uint64_t n = 0;
    for (int i = 0; i <= SLOTS; i++) n += __atomic_load_n(&slots[i].frees, __ATOMIC_RELAXED);
    return n;
}

void *malloc(size_t n) { counted(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { counted(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { counted(); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { counted(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { counted(); return __libc_memalign(a, n); }
void *valloc(size_t n) { counted(); return __libc_valloc(n); }
int posix_memalign(void **out, size_t a, size_t n) {
    counted();
    void *p = __libc_memalign(a, n);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}
void free(void *p) { if (p) freed(); __libc_free(p); }
