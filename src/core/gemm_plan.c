/* gemm_plan.c — see gemm_plan.h.  A small table of shapes under one mutex (a lookup is a
 * few dozen comparisons next to a product of at least 2 M flops), the cache file, and the
 * environment. */
#include "core/gemm_plan.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/cpuinfo.h"
#include "core/gemm.h"

enum { PLAN_MAX = 64, CACHE_MAX = 512, PLAN_MIN_FLOPS = 2000000, LINE_MAX_CHARS = 1024 };

static const char *const WALK_NAMES[GEMM_NWALK] = {"j", "j-pfa", "j-nopf", "i", "kc128"};
static const char *const TREE_NAMES[GEMM_NTREE] = {"t24x64", "t36x128", "t12x256", "t36x128a"};

typedef struct {
    GemmShape s;
    unsigned cand;             /* candidates this shape may take */
    int trials;                /* calls handed out for timing */
    int reported;              /* of which reported */
    double best_s[GEMM_NWALK]; /* fastest time seen per candidate (0 = none yet) */
    int chosen;                /* >= 0 once decided */
    int from_cache;            /* decided by the cache file, not in this run */
    int used;                  /* looked up in this run */
} PlanEntry;

typedef enum { MODE_MEASURE, MODE_DEFAULT, MODE_FORCE } PlanMode;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_ready;
static PlanMode g_mode;
static int g_force[2]; /* MODE_FORCE: the walk and the tree block (-1 = default) */
static char g_cache[1024];
static char g_cpu[256];
static PlanEntry g_tab[PLAN_MAX]; /* the shapes this run used */
static int g_n;
static unsigned g_gen;             /* bumped by gemm_plan_reset: stale slots are ignored */
static atomic_int g_ready_fast;    /* ready() done and the mode needs no lock for small products */
typedef struct {
    GemmShape s;
    int v;
} CachedPlan;
static CachedPlan g_cached[CACHE_MAX]; /* this CPU's and kernel's lines of the cache file */
static int g_nc;

const char *gemm_plan_name(int kind, int v)
{
    if (kind == GEMM_KIND_PRODUCT) return v >= 0 && v < GEMM_NWALK ? WALK_NAMES[v] : NULL;
    if (kind == GEMM_KIND_TREE) return v >= 0 && v < GEMM_NTREE ? TREE_NAMES[v] : NULL;
    return NULL;
}

static int name_index(int kind, const char *name, size_t len)
{
    int nv = kind == GEMM_KIND_PRODUCT ? GEMM_NWALK : GEMM_NTREE;
    if (kind != GEMM_KIND_PRODUCT && kind != GEMM_KIND_TREE) return -1;
    for (int v = 0; v < nv; v++) {
        const char *s = gemm_plan_name(kind, v);
        if (s && strlen(s) == len && !strncmp(s, name, len)) return v;
    }
    return -1;
}

/* parses MPITRAIN_PLAN into mode and forced choices; 0 or -1 with why */
static int parse_env(PlanMode *mode, int force[2], char *why, size_t n)
{
    const char *e = getenv("MPITRAIN_PLAN");
    force[0] = force[1] = -1;
    *mode = MODE_MEASURE;
    if (!e || !*e || !strcmp(e, "measure")) return 0;
    if (!strcmp(e, "default")) {
        *mode = MODE_DEFAULT;
        return 0;
    }
    *mode = MODE_FORCE;
    for (const char *p = e; *p;) {
        size_t len = strcspn(p, ",");
        int w = name_index(GEMM_KIND_PRODUCT, p, len), t = name_index(GEMM_KIND_TREE, p, len);
        if (w >= 0) force[0] = w;
        else if (t >= 0) force[1] = t;
        else {
            if (why)
                snprintf(why, n,
                         "MPITRAIN_PLAN=%s: '%.*s' is not a plan; use measure (the default), "
                         "default, or a walk (j, j-pfa, j-nopf, i, kc128) and/or a tree block "
                         "(t24x64, t36x128, t12x256, t36x128a), comma-separated",
                         e, (int)len, p);
            return -1;
        }
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

int gemm_plan_check_env(char *why, size_t n)
{
    PlanMode m;
    int f[2];
    return parse_env(&m, f, why, n);
}

static void cache_path(void)
{
    const char *e = getenv("MPITRAIN_PLAN_CACHE"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    g_cache[0] = 0;
    if (e && *e) {
        if (strcmp(e, "off") != 0) snprintf(g_cache, sizeof g_cache, "%s", e);
    } else if (x && *x) snprintf(g_cache, sizeof g_cache, "%s/mpitrain/gemm-plan", x);
    else if (h && *h) snprintf(g_cache, sizeof g_cache, "%s/.cache/mpitrain/gemm-plan", h);
}

static int shape_eq(const GemmShape *a, const GemmShape *b)
{
    return a->kind == b->kind && a->m == b->m && a->n == b->n && a->k == b->k &&
           a->nleaf == b->nleaf && a->acc == b->acc && a->rsa == b->rsa && a->csa == b->csa &&
           a->ldb == b->ldb && a->ldc == b->ldc;
}

static PlanEntry *find(const GemmShape *s)
{
    for (int i = 0; i < g_n; i++)
        if (shape_eq(&g_tab[i].s, s)) return &g_tab[i];
    return NULL;
}

/* one cache line: CPU \t ISA \t kind m n k nleaf acc rsa csa ldb ldc \t name */
static int parse_line(char *line, char **cpu, char **isa, GemmShape *s, char **name)
{
    char *f[4];
    for (int i = 0; i < 4; i++) {
        f[i] = line;
        line = strchr(line, '\t');
        if (!line && i < 3) return -1;
        if (line) *line++ = 0;
    }
    f[3][strcspn(f[3], "\n")] = 0;
    long v[10];
    if (sscanf(f[2], "%ld %ld %ld %ld %ld %ld %ld %ld %ld %ld", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7], &v[8], &v[9]) != 10)
        return -1;
    if ((v[0] != GEMM_KIND_PRODUCT && v[0] != GEMM_KIND_TREE) || v[1] <= 0 || v[2] <= 0 || v[3] <= 0 ||
        v[1] > 1 << 30 || v[2] > 1 << 30 || v[3] > 1 << 30 || v[4] < 0 || v[4] > 1 << 20)
        return -1; /* not a line this version wrote: ignored (and dropped by the next save) */
    *s = (GemmShape){(int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[5], v[6], v[7], v[8], v[9]};
    *cpu = f[0];
    *isa = f[1];
    *name = f[3];
    return 0;
}

/* reads one line into buf (NUL-terminated); a longer line is read to its end and
 * returned as "" (ignored).  0 at the end of the file. */
static int read_line(FILE *f, char *buf, size_t n)
{
    if (!fgets(buf, (int)n, f)) return 0;
    if (!strchr(buf, '\n') && !feof(f)) {
        int ch;
        while ((ch = fgetc(f)) != EOF && ch != '\n') {
        }
        buf[0] = 0;
    }
    return 1;
}

static void cache_load(void)
{
    if (!g_cache[0]) return;
    FILE *f = fopen(g_cache, "r");
    if (!f) return;
    char line[LINE_MAX_CHARS];
    const char *isa = gemm_isa_name();
    while (read_line(f, line, sizeof line) && g_nc < CACHE_MAX) {
        char *cpu, *li, *name;
        GemmShape s;
        if (line[0] == '#' || parse_line(line, &cpu, &li, &s, &name) != 0) continue;
        if (strcmp(cpu, g_cpu) != 0 || strcmp(li, isa) != 0) continue;
        int v = name_index(s.kind, name, strlen(name));
        if (v < 0) continue;
        g_cached[g_nc++] = (CachedPlan){s, v};
    }
    fclose(f);
}

static const CachedPlan *find_cached(const GemmShape *s)
{
    for (int i = 0; i < g_nc; i++)
        if (shape_eq(&g_cached[i].s, s)) return &g_cached[i];
    return NULL;
}

static void ready(void)
{
    if (g_ready) return;
    if (parse_env(&g_mode, g_force, NULL, 0) != 0) g_mode = MODE_DEFAULT; /* checked at start */
    cpu_model_id(g_cpu, sizeof g_cpu);
    for (char *p = g_cpu; *p; p++)
        if (*p == '\t' || *p == '\n') *p = ' ';
    cache_path();
    g_nc = 0;
    if (g_mode == MODE_MEASURE) cache_load();
    g_ready = 1;
    atomic_store_explicit(&g_ready_fast, g_mode != MODE_FORCE, memory_order_release);
}

static double flops(const GemmShape *s)
{
    return 2.0 * s->m * s->n * s->k * (s->nleaf > 0 ? s->nleaf : 1);
}

int gemm_plan_choose(const GemmShape *s, unsigned cand, int *slot)
{
    *slot = -1;
    cand |= 1u;
    /* below the planning size nothing is planned (unless forced): no lock needed */
    if (flops(s) < PLAN_MIN_FLOPS && atomic_load_explicit(&g_ready_fast, memory_order_acquire)) return 0;
    pthread_mutex_lock(&g_mu);
    ready();
    int v = 0;
    if (g_mode == MODE_FORCE) {
        int f = g_force[s->kind == GEMM_KIND_TREE];
        v = f >= 0 && (cand >> f & 1u) ? f : 0;
    } else if (g_mode == MODE_MEASURE && flops(s) >= PLAN_MIN_FLOPS) {
        PlanEntry *e = find(s);
        if (!e && g_n < PLAN_MAX) {
            const CachedPlan *cp = find_cached(s);
            e = &g_tab[g_n++];
            memset(e, 0, sizeof *e);
            e->s = *s;
            e->cand = cand;
            e->chosen = -1;
            if (cp && (cand >> cp->v & 1u)) {
                e->chosen = cp->v;
                e->from_cache = 1;
            }
        }
        if (e) e->used = 1;
        if (e && e->chosen >= 0) v = (cand >> e->chosen & 1u) ? e->chosen : 0;
        else if (e) {
            int nc = __builtin_popcount(e->cand);
            if (e->trials < nc * GEMM_PLAN_ROUNDS) {
                /* the (trials mod nc)-th candidate, round-robin */
                int want = e->trials % nc, seen = 0;
                for (v = 0; v < GEMM_NWALK; v++)
                    if ((e->cand >> v & 1u) && seen++ == want) break;
                e->trials++;
                *slot = (int)(e - g_tab) + PLAN_MAX * (int)(g_gen & 0xFFFF);
            } else v = 0; /* waiting for the last reports */
        }
    }
    pthread_mutex_unlock(&g_mu);
    return v;
}

void gemm_plan_report(int slot, int variant, double seconds)
{
    if (slot < 0 || variant < 0 || variant >= GEMM_NWALK) return;
    pthread_mutex_lock(&g_mu);
    if (slot / PLAN_MAX != (int)(g_gen & 0xFFFF) || slot % PLAN_MAX >= g_n) { /* from before a reset */
        pthread_mutex_unlock(&g_mu);
        return;
    }
    PlanEntry *e = &g_tab[slot % PLAN_MAX];
    if (e->chosen < 0) {
        if (e->best_s[variant] == 0 || seconds < e->best_s[variant]) e->best_s[variant] = seconds;
        int nc = __builtin_popcount(e->cand);
        if (++e->reported >= nc * GEMM_PLAN_ROUNDS) {
            int best = 0;
            for (int c = 0; c < GEMM_NWALK; c++)
                if ((e->cand >> c & 1u) && e->best_s[c] > 0 &&
                    (e->best_s[best] == 0 || e->best_s[c] < e->best_s[best]))
                    best = c;
            e->chosen = best;
        }
    }
    pthread_mutex_unlock(&g_mu);
}

void gemm_plan_describe(char *buf, size_t n)
{
    pthread_mutex_lock(&g_mu);
    ready();
    size_t o = 0;
    const char *mode = g_mode == MODE_MEASURE ? "measure" : g_mode == MODE_DEFAULT ? "default" : "forced";
#define PUT(...) do { if (o < n) o += (size_t)snprintf(buf + o, n - o, __VA_ARGS__); } while (0)
    PUT("%s", mode);
    if (g_mode == MODE_FORCE)
        PUT(" %s%s%s", g_force[0] >= 0 ? WALK_NAMES[g_force[0]] : "",
            g_force[0] >= 0 && g_force[1] >= 0 ? "," : "", g_force[1] >= 0 ? TREE_NAMES[g_force[1]] : "");
    if (g_mode == MODE_MEASURE) {
        int measured = 0, cached = 0, pending = 0;
        for (int i = 0; i < g_n; i++) {
            if (!g_tab[i].used) continue;
            if (g_tab[i].chosen < 0) pending++;
            else if (g_tab[i].from_cache) cached++;
            else measured++;
        }
        PUT(" (%d shape%s measured in this run, %d from the cache %s%s)", measured,
            measured == 1 ? "" : "s", cached, g_cache[0] ? g_cache : "(off)",
            pending ? ", some still being measured" : "");
        int first = 1;
        for (int i = 0; i < g_n; i++) {
            const PlanEntry *e = &g_tab[i];
            if (e->chosen < 0 || !e->used) continue;
            PUT("%s%s%dx%dx%d", first ? ": " : ", ", e->s.kind == GEMM_KIND_TREE ? "tree " : "",
                e->s.m, e->s.n, e->s.k);
            if (e->s.kind == GEMM_KIND_TREE) PUT("/%d", e->s.nleaf);
            if (e->s.acc) PUT("+");
            PUT(" %s", gemm_plan_name(e->s.kind, e->chosen));
            first = 0;
        }
    }
#undef PUT
    if (n) buf[n - 1 < o ? n - 1 : o] = 0;
    pthread_mutex_unlock(&g_mu);
}

/* mkdir -p of the directory part of path (common.h's mkdir_p) */
static int mkdirs_for(const char *path)
{
    char d[1024];
    snprintf(d, sizeof d, "%s", path);
    char *slash = strrchr(d, '/');
    if (!slash || slash == d) return 0;
    *slash = 0;
    return mkdir_p(d);
}

int gemm_plan_save(void)
{
    pthread_mutex_lock(&g_mu);
    ready();
    int rc = 1, any = 0;
    for (int i = 0; i < g_n; i++) any |= g_tab[i].chosen >= 0 && !g_tab[i].from_cache;
    if (g_mode != MODE_MEASURE || !g_cache[0] || !any) goto out;
    rc = -1;
    if (mkdirs_for(g_cache) != 0) goto out;
    /* a temporary name no other process (on any host sharing the directory) uses */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", g_cache); /* mkstemp's template, filled in by it */
    int fd = mkstemp(tmp);
    if (fd < 0) goto out;
    FILE *out = fdopen(fd, "w");
    if (!out) {
        close(fd);
        unlink(tmp);
        goto out;
    }
    fprintf(out, "# mpitrain gemm plan cache, v1: CPU \\t kernel \\t kind m n k nleaf acc rsa csa ldb ldc \\t walk\n"
                 "# written by gemm_plan_save (src/core/gemm_plan.c); safe to delete\n");
    const char *isa = gemm_isa_name();
    FILE *in = fopen(g_cache, "r");
    if (in) { /* keep every line that is not one of ours */
        char line[LINE_MAX_CHARS], copy[LINE_MAX_CHARS];
        while (read_line(in, line, sizeof line)) {
            char *cpu, *li, *name;
            GemmShape s;
            memcpy(copy, line, sizeof line);
            if (line[0] == '#' || parse_line(line, &cpu, &li, &s, &name) != 0) continue;
            if (!strcmp(cpu, g_cpu) && !strcmp(li, isa) && find(&s) && find(&s)->chosen >= 0) continue;
            fputs(copy, out);
        }
        fclose(in);
    }
    for (int i = 0; i < g_n; i++) {
        const PlanEntry *e = &g_tab[i];
        if (e->chosen < 0) continue;
        fprintf(out, "%s\t%s\t%d %d %d %d %d %d %ld %ld %ld %ld\t%s\n", g_cpu, isa, e->s.kind, e->s.m,
                e->s.n, e->s.k, e->s.nleaf, e->s.acc, (long)e->s.rsa, (long)e->s.csa, (long)e->s.ldb,
                (long)e->s.ldc, gemm_plan_name(e->s.kind, e->chosen));
    }
    int bad = ferror(out);
    if (bad) errno = EIO;
    if (fclose(out) != 0 || bad || rename(tmp, g_cache) != 0) {
        int er = errno;
        unlink(tmp);
        errno = er ? er : EIO;
        goto out;
    }
    rc = 0;
out:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void gemm_plan_reset(void)
{
    pthread_mutex_lock(&g_mu);
    atomic_store_explicit(&g_ready_fast, 0, memory_order_release);
    g_n = 0;
    g_nc = 0;
    g_gen++;
    g_ready = 0;
    pthread_mutex_unlock(&g_mu);
}
