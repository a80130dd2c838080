/* gemm.c — see gemm.h.  Three kernels with the same arithmetic: each C element is one
 * fma chain over p in order.  They differ only in how many elements they carry at once:
 *
 *   avx512: tiles of 12 rows x 32 columns (24 zmm accumulators), per p: 2 loads of B,
 *           12 broadcasts of A, 24 fma
 *   avx2:   tiles of 6 rows x 16 columns (12 ymm accumulators)
 *   c:      one row at a time with fmaf (any CPU; slow where fma is emulated)
 *
 * Column tails use masked loads and stores (lanes past n compute on zeros and are never
 * stored); row tails use a narrower instance of the same kernel. */
#include "core/gemm.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(GEMM_NO_X86)
#define GEMM_X86 1
#include <immintrin.h>
#else
#define GEMM_X86 0 /* elsewhere: the portable C kernel only (same bits, slower) */
#endif
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/gemm_plan.h"
#include "core/tree.h"

#define GEMM_ALWAYS_INLINE inline __attribute__((always_inline))

/* How a kernel walks one product (gemm_plan.h chooses among them by measurement; none
 * changes a bit, since each C element stays one fma chain over p in order):
 *   order 0: panels of B's columns outer, row tiles inner (a B panel stays in L1);
 *   order 1: row tiles outer, panels inner (a tile's rows of A stay in L1);
 *   kc > 0:  p cut into blocks of kc, rows into blocks of 8 tiles
 *            (96 rows with AVX-512, 48 with AVX2): the next block's chains
 *            continue from the partial sums left in C (only where C is not accumulated
 *            into), so a block of A and of B stay in L2 on CPUs with a small one;
 *   pfb/pfa: software prefetch of B's rows / A's columns that lie further apart than
 *            the L1 stride prefetcher follows; -1 = decide by the strides (default). */
typedef struct {
    int order, kc, pfb, pfa;
} Walk;

static const Walk WALK_DEFAULT = {0, 0, -1, -1};

/* ---------------------------------------------------------------- portable C kernel */

static void gemm_c(const Walk *w, int m, int n, int k, const float *a, ptrdiff_t rsa,
                   ptrdiff_t csa, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
                   int accumulate)
{
    (void)w; /* one walk: row by row */
    enum { JB = 256 };
    float s[JB];
    for (int i = 0; i < m; i++) {
        float *ci = c + (ptrdiff_t)i * ldc;
        for (int j0 = 0; j0 < n; j0 += JB) {
            int nj = n - j0 < JB ? n - j0 : JB;
            for (int j = 0; j < nj; j++) s[j] = 0.0f;
            for (int p = 0; p < k; p++) {
                float av = a[(ptrdiff_t)i * rsa + (ptrdiff_t)p * csa];
                const float *bp = b + (ptrdiff_t)p * ldb + j0;
                for (int j = 0; j < nj; j++) s[j] = fmaf(av, bp[j], s[j]);
            }
            if (accumulate)
                for (int j = 0; j < nj; j++) ci[j0 + j] = ci[j0 + j] + s[j];
            else
                memcpy(ci + j0, s, (size_t)nj * sizeof(float));
        }
    }
}


#if GEMM_X86
/* Rows of B (or columns of A) further apart than the L1 stride prefetcher follows (1 KB)
 * are prefetched this many rows ahead: dx = dy W reads a new row of W for each p, and
 * dW = dy^T x a new row of dy.  Measured: +20-25 % on the first (AVX-512), +10 % on the
 * second (AVX2), -5 % where B's rows are adjacent, so only there. */
#define GEMM_PF 16
#define GEMM_PFA 8
#define GEMM_PF_LDB 256

static void walk_prefetch(const Walk *w, int k, ptrdiff_t csa, ptrdiff_t ldb, int *pfb, int *pfa)
{
    *pfb = w->pfb >= 0 ? w->pfb : ldb >= GEMM_PF_LDB && k >= 4 * GEMM_PF;
    *pfa = w->pfa >= 0 ? w->pfa : csa >= GEMM_PF_LDB && k >= 16;
    if (*pfb) *pfa = 0; /* one stream prefetched at a time */
}

/* One case of a panel's switch over the rows left: a tile of R rows through TILE with the
 * prefetch variant pf (the tile's constant arguments: mr, pf, full), the ragged panel
 * (fewer than FULL columns) unprefetched and masked.  Both kernels' panels use it, with
 * their own tile function and panel width. */
#define PANEL_CASE(TILE, FULL, R)                                                          \
    case R:                                                                                \
        if (nj < FULL) TILE(R, 0, 0, cont, k, ai, rsa, csa, bj, ldb, cij, ldc, m0, m1, accumulate); \
        else if (pf == 1) TILE(R, 1, 1, cont, k, ai, rsa, csa, bj, ldb, cij, ldc, m0, m1, accumulate); \
        else if (pf == 2) TILE(R, 2, 1, cont, k, ai, rsa, csa, bj, ldb, cij, ldc, m0, m1, accumulate); \
        else TILE(R, 0, 1, cont, k, ai, rsa, csa, bj, ldb, cij, ldc, m0, m1, accumulate);  \
        break;

/* ---------------------------------------------------------------- AVX-512 kernel */

#define MR512 12

/* C tile (mr, 32) = [C +] chain; cont: the chains continue from the sums in C (k-blocks) */
__attribute__((target("avx512f"))) static GEMM_ALWAYS_INLINE void
tile512(const int mr, const int pf, const int full, int cont, int k, const float *a,
        ptrdiff_t rsa, ptrdiff_t csa, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
        __mmask16 m0, __mmask16 m1, int accumulate)
{
    __m512 c0[MR512], c1[MR512];
    if (cont) {
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            c0[r] = _mm512_maskz_loadu_ps(m0, c + (ptrdiff_t)r * ldc);
            c1[r] = _mm512_maskz_loadu_ps(m1, c + (ptrdiff_t)r * ldc + 16);
        }
    } else {
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    }
    for (int p = 0; p < k; p++) {
        const float *bp = b + (ptrdiff_t)p * ldb;
        if (pf == 1) {
            _mm_prefetch((const char *)(bp + GEMM_PF * ldb), _MM_HINT_T0);
            _mm_prefetch((const char *)(bp + GEMM_PF * ldb + 16), _MM_HINT_T0);
        } else if (pf == 2)
            _mm_prefetch((const char *)(a + (ptrdiff_t)(p + GEMM_PFA) * csa), _MM_HINT_T0);
        __m512 b0 = full ? _mm512_loadu_ps(bp) : _mm512_maskz_loadu_ps(m0, bp);
        __m512 b1 = full ? _mm512_loadu_ps(bp + 16) : _mm512_maskz_loadu_ps(m1, bp + 16);
        const float *ap = a + (ptrdiff_t)p * csa;
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            __m512 av = _mm512_set1_ps(ap[(ptrdiff_t)r * rsa]);
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        float *cr = c + (ptrdiff_t)r * ldc;
        if (accumulate) {
            c0[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), c0[r]);
            c1[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), c1[r]);
        }
        if (full) {
            _mm512_storeu_ps(cr, c0[r]);
            _mm512_storeu_ps(cr + 16, c1[r]);
        } else {
            _mm512_mask_storeu_ps(cr, m0, c0[r]);
            _mm512_mask_storeu_ps(cr + 16, m1, c1[r]);
        }
    }
}

/* the tiles of rows [i0, i1) (up to 12 rows each) in the panel of 32 columns at j0 */
__attribute__((target("avx512f"))) static void
panel512(int i0, int i1, int j0, int m, int n, int pf, int cont, int k, const float *a,
           ptrdiff_t rsa, ptrdiff_t csa, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
           int accumulate)
{
    (void)m;
    int nj = n - j0;
    __mmask16 m0 = nj >= 16 ? 0xFFFF : (__mmask16)((1u << nj) - 1u);
    __mmask16 m1 = nj >= 32 ? 0xFFFF : nj <= 16 ? 0 : (__mmask16)((1u << (nj - 16)) - 1u);
    const float *bj = b + j0;
    for (; i0 < i1; i0 += MR512) {
    const float *ai = a + (ptrdiff_t)i0 * rsa;
    float *cij = c + (ptrdiff_t)i0 * ldc + j0;
    switch (i1 - i0 >= MR512 ? MR512 : i1 - i0) {
#define T512(R) PANEL_CASE(tile512, 32, R)
        T512(12) T512(11) T512(10) T512(9) T512(8) T512(7)
        T512(6) T512(5) T512(4) T512(3) T512(2) T512(1)
#undef T512
    }
    }
}

/* ---------------------------------------------------------------- AVX2 kernel */

#define MR256 6

__attribute__((target("avx2,fma"))) static GEMM_ALWAYS_INLINE void
tile256(const int mr, const int pf, const int full, int cont, int k, const float *a,
        ptrdiff_t rsa, ptrdiff_t csa, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
        __m256i m0, __m256i m1, int accumulate)
{
    __m256 c0[MR256], c1[MR256];
    if (cont) {
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            c0[r] = _mm256_maskload_ps(c + (ptrdiff_t)r * ldc, m0);
            c1[r] = _mm256_maskload_ps(c + (ptrdiff_t)r * ldc + 8, m1);
        }
    } else {
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) c0[r] = c1[r] = _mm256_setzero_ps();
    }
    for (int p = 0; p < k; p++) {
        const float *bp = b + (ptrdiff_t)p * ldb;
        if (pf == 1) _mm_prefetch((const char *)(bp + GEMM_PF * ldb), _MM_HINT_T0);
        else if (pf == 2) _mm_prefetch((const char *)(a + (ptrdiff_t)(p + GEMM_PFA) * csa), _MM_HINT_T0);
        /* unmasked loads where the tile is whole: a masked load costs an extra uop on
         * the FMA ports of Intel cores (measured: +14 % for the MLP's products) */
        __m256 b0 = full ? _mm256_loadu_ps(bp) : _mm256_maskload_ps(bp, m0);
        __m256 b1 = full ? _mm256_loadu_ps(bp + 8) : _mm256_maskload_ps(bp + 8, m1);
        const float *ap = a + (ptrdiff_t)p * csa;
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            __m256 av = _mm256_broadcast_ss(ap + (ptrdiff_t)r * rsa);
            c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        float *cr = c + (ptrdiff_t)r * ldc;
        if (full) {
            if (accumulate) {
                c0[r] = _mm256_add_ps(_mm256_loadu_ps(cr), c0[r]);
                c1[r] = _mm256_add_ps(_mm256_loadu_ps(cr + 8), c1[r]);
            }
            _mm256_storeu_ps(cr, c0[r]);
            _mm256_storeu_ps(cr + 8, c1[r]);
        } else {
            if (accumulate) {
                c0[r] = _mm256_add_ps(_mm256_maskload_ps(cr, m0), c0[r]);
                c1[r] = _mm256_add_ps(_mm256_maskload_ps(cr + 8, m1), c1[r]);
            }
            _mm256_maskstore_ps(cr, m0, c0[r]);
            _mm256_maskstore_ps(cr + 8, m1, c1[r]);
        }
    }
}

__attribute__((target("avx2,fma"))) static __m256i lanes_below(int n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

/* the tiles of rows [i0, i1) (up to 6 rows each) in the panel of 16 columns at j0 */
__attribute__((target("avx2,fma"))) static void
panel256(int i0, int i1, int j0, int m, int n, int pf, int cont, int k, const float *a,
           ptrdiff_t rsa, ptrdiff_t csa, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
           int accumulate)
{
    (void)m;
    int nj = n - j0;
    __m256i m0 = lanes_below(nj), m1 = lanes_below(nj - 8);
    const float *bj = b + j0;
    for (; i0 < i1; i0 += MR256) {
    const float *ai = a + (ptrdiff_t)i0 * rsa;
    float *cij = c + (ptrdiff_t)i0 * ldc + j0;
    switch (i1 - i0 >= MR256 ? MR256 : i1 - i0) {
#define T256(R) PANEL_CASE(tile256, 16, R)
        T256(6) T256(5) T256(4) T256(3) T256(2) T256(1)
#undef T256
    }
    }
}

typedef void (*PanelFn)(int, int, int, int, int, int, int, int, const float *, ptrdiff_t,
                         ptrdiff_t, const float *, ptrdiff_t, float *, ptrdiff_t, int);

/* the walk over tiles, common to both vector kernels (mr x nr tiles) */
static GEMM_ALWAYS_INLINE void walk_tiles(const Walk *w, PanelFn panel, const int mr,
                                          const int nr, int m, int n, int k, const float *a,
                                          ptrdiff_t rsa, ptrdiff_t csa, const float *b,
                                          ptrdiff_t ldb, float *c, ptrdiff_t ldc, int accumulate)
{
    /* k-blocks only where C holds nothing to accumulate into: the partial sums live there */
    const int kc = w->kc > 0 && !accumulate && k > w->kc ? w->kc : k;
    const int mb = kc < k ? 8 * mr : m; /* rows per block: 96 (AVX-512) or 48 (AVX2) */
    for (int p0 = 0; p0 < k; p0 += kc) {
        const int kk = MT_MIN(kc, k - p0), cont = p0 > 0;
        const float *ak = a + (ptrdiff_t)p0 * csa, *bk = b + (ptrdiff_t)p0 * ldb;
        int pfb, pfa;
        walk_prefetch(w, kk, csa, ldb, &pfb, &pfa);
        const int pf = pfb ? 1 : pfa ? 2 : 0;
        const int acc = accumulate && p0 + kk == k;
        if (w->order == 1) {
            for (int i0 = 0; i0 < m; i0 += mr)
                for (int j0 = 0; j0 < n; j0 += nr)
                    panel(i0, MT_MIN(m, i0 + mr), j0, m, n, pf, cont, kk, ak, rsa, csa, bk, ldb, c, ldc, acc);
            continue;
        }
        for (int ib = 0; ib < m; ib += mb) {
            const int ie = MT_MIN(m, ib + mb);
            for (int j0 = 0; j0 < n; j0 += nr)
                panel(ib, ie, j0, m, n, pf, cont, kk, ak, rsa, csa, bk, ldb, c, ldc, acc);
        }
    }
}

static void gemm_avx512(const Walk *w, int m, int n, int k, const float *a, ptrdiff_t rsa,
                        ptrdiff_t csa, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
                        int accumulate)
{
    walk_tiles(w, panel512, MR512, 32, m, n, k, a, rsa, csa, b, ldb, c, ldc, accumulate);
}

static void gemm_avx2(const Walk *w, int m, int n, int k, const float *a, ptrdiff_t rsa,
                      ptrdiff_t csa, const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc,
                      int accumulate)
{
    walk_tiles(w, panel256, MR256, 16, m, n, k, a, rsa, csa, b, ldb, c, ldc, accumulate);
}

#undef PANEL_CASE
#endif /* GEMM_X86 */

/* ---------------------------------------------------------------- dispatch */

typedef void (*GemmFn)(const Walk *, int, int, int, const float *, ptrdiff_t, ptrdiff_t,
                       const float *, ptrdiff_t, float *, ptrdiff_t, int);

static GemmFn g_fn;
static GemmIsa g_isa;

static GemmIsa isa_best(void)
{
#if GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return GEMM_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return GEMM_ISA_AVX2;
#endif
    return GEMM_ISA_C;
}

static void isa_set(GemmIsa isa)
{
    g_isa = isa;
#if GEMM_X86
    g_fn = isa == GEMM_ISA_AVX512 ? gemm_avx512 : isa == GEMM_ISA_AVX2 ? gemm_avx2 : gemm_c;
#else
    g_fn = gemm_c;
#endif
}

static void isa_init_once(void)
{
    GemmIsa best = isa_best(), want = best;
    const char *env = getenv("MPITRAIN_GEMM_ISA");
    if (env && *env) {
        if (!strcmp(env, "avx512")) want = GEMM_ISA_AVX512;
        else if (!strcmp(env, "avx2")) want = GEMM_ISA_AVX2;
        else if (!strcmp(env, "c")) want = GEMM_ISA_C;
        if (want > best) want = best;
    }
    isa_set(want);
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void isa_init(void) { pthread_once(&g_once, isa_init_once); }

int gemm_force_isa(GemmIsa isa)
{
    isa_init();
    GemmIsa best = isa_best();
    if (isa == GEMM_ISA_AUTO) isa = best;
    if (isa > best) return -1;
    isa_set(isa);
    return 0;
}

const char *gemm_isa_name(void)
{
    isa_init();
    return g_isa == GEMM_ISA_AVX512 ? "avx512" : g_isa == GEMM_ISA_AVX2 ? "avx2" : "c";
}

/* the walks named by gemm_plan.h, in its order */
static const Walk WALKS[GEMM_NWALK] = {
    [GEMM_WALK_J] = {0, 0, -1, -1},      [GEMM_WALK_J_PFA] = {0, 0, 0, -1},
    [GEMM_WALK_J_NOPF] = {0, 0, 0, 0},   [GEMM_WALK_I] = {1, 0, -1, -1},
    [GEMM_WALK_KC128] = {0, 128, -1, -1},
};

/* The walks that differ for this shape (one of each kind: a walk that would do exactly
 * what an earlier one does is not a candidate), as a bit set. */
static unsigned walk_candidates(int k, ptrdiff_t csa, ptrdiff_t ldb, int accumulate)
{
    if (g_isa == GEMM_ISA_C) return 1u;
    int eff[GEMM_NWALK][4];
    unsigned cand = 0;
    for (int v = 0; v < GEMM_NWALK; v++) {
        const Walk *w = &WALKS[v];
        int kc = w->kc > 0 && !accumulate && k > w->kc ? w->kc : 0, pfb = 0, pfa = 0;
#if GEMM_X86
        walk_prefetch(w, kc ? kc : k, csa, ldb, &pfb, &pfa);
#else
        (void)csa;
        (void)ldb;
#endif
        int e[4] = {w->order, kc, pfb, pfa}, dup = 0;
        for (int u = 0; u < v && !dup; u++)
            dup = (cand >> u & 1u) && !memcmp(eff[u], e, sizeof e);
        memcpy(eff[v], e, sizeof e);
        if (!dup) cand |= 1u << v;
    }
    return cand;
}

void gemm_f32(int m, int n, int k, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
              const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, int accumulate)
{
    if (m <= 0 || n <= 0) return;
    isa_init();
    if (k <= 0) {
        if (!accumulate)
            for (int i = 0; i < m; i++) memset(c + (ptrdiff_t)i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    GemmShape s = {GEMM_KIND_PRODUCT, m, n, k, 0, accumulate, rsa, csa, ldb, ldc};
    int slot, v = gemm_plan_choose(&s, walk_candidates(k, csa, ldb, accumulate), &slot);
    double t0 = slot >= 0 ? now_s() : 0;
    g_fn(&WALKS[v], m, n, k, a, rsa, csa, b, ldb, c, ldc, accumulate);
    if (slot >= 0) gemm_plan_report(slot, v, now_s() - t0);
}

/* ---------------------------------------------------------------- tree of products */

/* d (mr, nc) = d + s, elementwise (one rounding each, whatever the vector width) */
static void add_c(int mr, int nc, float *d, ptrdiff_t ldd, const float *s, ptrdiff_t lds)
{
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nc; j++) d[r * ldd + j] = d[r * ldd + j] + s[r * lds + j];
}

#if GEMM_X86
__attribute__((target("avx512f"))) static void add_avx512(int mr, int nc, float *d,
                                                          ptrdiff_t ldd, const float *s,
                                                          ptrdiff_t lds)
{
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nc; j += 16) {
            __mmask16 mk = nc - j >= 16 ? 0xFFFF : (__mmask16)((1u << (nc - j)) - 1u);
            float *dp = d + r * ldd + j;
            __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, dp), _mm512_maskz_loadu_ps(mk, s + r * lds + j));
            _mm512_mask_storeu_ps(dp, mk, v);
        }
}

__attribute__((target("avx2,fma"))) static void add_avx2(int mr, int nc, float *d,
                                                         ptrdiff_t ldd, const float *s,
                                                         ptrdiff_t lds)
{
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nc; j += 8) {
            float *dp = d + r * ldd + j;
            if (nc - j >= 8) { /* unmasked where whole (see tile256) */
                _mm256_storeu_ps(dp, _mm256_add_ps(_mm256_loadu_ps(dp), _mm256_loadu_ps(s + r * lds + j)));
                continue;
            }
            __m256i mk = lanes_below(nc - j);
            __m256 v = _mm256_add_ps(_mm256_maskload_ps(dp, mk), _mm256_maskload_ps(s + r * lds + j, mk));
            _mm256_maskstore_ps(dp, mk, v);
        }
}

#endif

static void g_add(int mr, int nc, float *d, ptrdiff_t ldd, const float *s, ptrdiff_t lds)
{
#if GEMM_X86
    if (g_isa == GEMM_ISA_AVX512) add_avx512(mr, nc, d, ldd, s, lds);
    else if (g_isa == GEMM_ISA_AVX2) add_avx2(mr, nc, d, ldd, s, lds);
    else
#endif
        add_c(mr, nc, d, ldd, s, lds);
}

/* the blocks of C the tree forms in scratch (rows, columns), in gemm_plan.h's order;
 * rows a multiple of both kernels' tile heights */
static const int TREE_BLOCK[GEMM_NTREE][2] = {[GEMM_TREE_24X64] = {24, 64},
                                              [GEMM_TREE_36X128] = {36, 128},
                                              [GEMM_TREE_12X256] = {12, 256},
                                              [GEMM_TREE_36X128A] = {36, 128}};
enum { TREE_SCRATCH = 36 * 128 }; /* floats per level: the largest block */

typedef struct {
    int k, bn;
    const float *a, *b;
    ptrdiff_t rsa, csa, a_leaf, ldb, b_leaf;
} TreeArgs;

/* dst (mr, nc) = T(lo, hi) for the block whose A rows start at a_off, B columns at b_off;
 * tmp: scratch of one block per remaining level. */
static void tree_block(const TreeArgs *t, int lo, int hi, int mr, int nc, ptrdiff_t a_off,
                       ptrdiff_t b_off, float *dst, ptrdiff_t ldd, float *tmp)
{
    if (hi - lo == 1) {
        g_fn(&WALK_DEFAULT, mr, nc, t->k, t->a + lo * t->a_leaf + a_off, t->rsa, t->csa,
             t->b + lo * t->b_leaf + b_off, t->ldb, dst, ldd, 0);
        return;
    }
    int mid = tree_mid(lo, hi);
    tree_block(t, lo, mid, mr, nc, a_off, b_off, dst, ldd, tmp);
    if (hi - mid == 1) {
        /* a single leaf on the right: the kernel adds its finished chain to dst with one
         * rounding (accumulate), the bits of forming it apart and adding */
        g_fn(&WALK_DEFAULT, mr, nc, t->k, t->a + mid * t->a_leaf + a_off, t->rsa, t->csa,
             t->b + mid * t->b_leaf + b_off, t->ldb, dst, ldd, 1);
        return;
    }
    tree_block(t, mid, hi, mr, nc, a_off, b_off, tmp, t->bn, tmp + TREE_SCRATCH);
    g_add(mr, nc, dst, ldd, tmp, t->bn);
}

void gemm_f32_tree(int m, int n, int k, int nleaf, const float *a, ptrdiff_t rsa,
                   ptrdiff_t csa, ptrdiff_t a_leaf, const float *b, ptrdiff_t ldb,
                   ptrdiff_t b_leaf, float *c, ptrdiff_t ldc)
{
    if (m <= 0 || n <= 0) return;
    CHECK(nleaf >= 1);
    isa_init();
    if (nleaf == 1 || k <= 0) {
        gemm_f32(m, n, k, a, rsa, csa, b, ldb, c, ldc, 0);
        return;
    }
    int depth = 0;
    while ((1 << depth) < nleaf) depth++;
    float *tmp = xaligned((size_t)depth * TREE_SCRATCH * sizeof(float));
    GemmShape s = {GEMM_KIND_TREE, m, n, k, nleaf, 0, rsa, csa, ldb, ldc};
    unsigned cand = g_isa == GEMM_ISA_C ? 1u : (1u << GEMM_NTREE) - 1u;
    int slot, v = gemm_plan_choose(&s, cand, &slot);
    double t0 = slot >= 0 ? now_s() : 0;
    const int bm = TREE_BLOCK[v][0], bn = TREE_BLOCK[v][1];
    TreeArgs t = {k, bn, a, b, rsa, csa, a_leaf, ldb, b_leaf};
    float *pa = NULL;
    if (v == GEMM_TREE_36X128A) {
        /* every leaf's rows [i0, i0 + bm) of A as (k, bm) panels, p major: A_q(i, p) at
         * pa[(q k + p) bm + i]; the same values, so the same bits */
        pa = xaligned((size_t)nleaf * (size_t)k * (size_t)bm * sizeof(float));
        t.a = pa;
        t.rsa = 1;
        t.csa = bm;
        t.a_leaf = (ptrdiff_t)k * bm;
    }
    for (int i0 = 0; i0 < m; i0 += bm) {
        const int mr = MT_MIN(bm, m - i0);
        if (pa)
            for (int q = 0; q < nleaf; q++)
                for (int p = 0; p < k; p++) {
                    const float *src = a + q * a_leaf + (ptrdiff_t)i0 * rsa + (ptrdiff_t)p * csa;
                    float *dst = pa + ((size_t)q * k + p) * bm;
                    if (rsa == 1) memcpy(dst, src, (size_t)mr * sizeof(float));
                    else
                        for (int i = 0; i < mr; i++) dst[i] = src[(ptrdiff_t)i * rsa];
                }
        for (int j0 = 0; j0 < n; j0 += bn)
            tree_block(&t, 0, nleaf, mr, MT_MIN(bn, n - j0), pa ? 0 : (ptrdiff_t)i0 * rsa, j0,
                       c + (ptrdiff_t)i0 * ldc + j0, ldc, tmp);
    }
    if (slot >= 0) gemm_plan_report(slot, v, now_s() - t0);
    free(pa);
    free(tmp);
}

/* ---------------------------------------------------------------- transposes */

#if GEMM_X86
/* out (16 rows, 16 cols) = in (16, 16)^T: unpack pairs of rows, shuffle groups of four,
 * then a 4 x 4 transpose of the 128-bit lanes. */
__attribute__((target("avx512f"))) static void tr16x16(const float *in, ptrdiff_t ldi,
                                                       float *out, ptrdiff_t ldo)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(in + (ptrdiff_t)i * ldi);
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4i+q], lane L: column 4L+q of rows 4i..4i+3 */
    for (int i = 0; i < 4; i++) {
        r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int q = 0; q < 4; q++) {
        __m512 v0 = _mm512_shuffle_f32x4(r[q], r[4 + q], _MM_SHUFFLE(1, 0, 1, 0));
        __m512 v1 = _mm512_shuffle_f32x4(r[q], r[4 + q], _MM_SHUFFLE(3, 2, 3, 2));
        __m512 v2 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], _MM_SHUFFLE(1, 0, 1, 0));
        __m512 v3 = _mm512_shuffle_f32x4(r[8 + q], r[12 + q], _MM_SHUFFLE(3, 2, 3, 2));
        _mm512_storeu_ps(out + (ptrdiff_t)(0 + q) * ldo, _mm512_shuffle_f32x4(v0, v2, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_ps(out + (ptrdiff_t)(4 + q) * ldo, _mm512_shuffle_f32x4(v0, v2, _MM_SHUFFLE(3, 1, 3, 1)));
        _mm512_storeu_ps(out + (ptrdiff_t)(8 + q) * ldo, _mm512_shuffle_f32x4(v1, v3, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_ps(out + (ptrdiff_t)(12 + q) * ldo, _mm512_shuffle_f32x4(v1, v3, _MM_SHUFFLE(3, 1, 3, 1)));
    }
}

/* out (8, 8) = in (8, 8)^T */
__attribute__((target("avx2,fma"))) static void tr8x8(const float *in, ptrdiff_t ldi,
                                                      float *out, ptrdiff_t ldo)
{
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(in + (ptrdiff_t)i * ldi);
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        r[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    /* r[4i+q], 128-bit lane L: column 4L+q of rows 4i..4i+3 */
    for (int q = 0; q < 4; q++) {
        _mm256_storeu_ps(out + (ptrdiff_t)q * ldo, _mm256_permute2f128_ps(r[q], r[4 + q], 0x20));
        _mm256_storeu_ps(out + (ptrdiff_t)(4 + q) * ldo, _mm256_permute2f128_ps(r[q], r[4 + q], 0x31));
    }
}

#endif

static void tr_scalar(int rows, int cols, const float *in, ptrdiff_t ldi, float *out,
                      ptrdiff_t ldo)
{
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++) out[(ptrdiff_t)j * ldo + i] = in[(ptrdiff_t)i * ldi + j];
}

void gemm_transpose(int rows, int cols, const float *in, ptrdiff_t ldi, float *out,
                    ptrdiff_t ldo)
{
    isa_init();
    /* whole blocks with the vector kernel, the ragged right and bottom edges in C
     * (a transpose moves values: the kernel does not change bits) */
    int tb = !GEMM_X86 ? 0 : g_isa == GEMM_ISA_AVX512 ? 16 : g_isa == GEMM_ISA_AVX2 ? 8 : 0;
    int rb = tb ? rows / tb * tb : 0, cb = tb ? cols / tb * tb : 0;
    for (int i0 = 0; i0 < rb; i0 += tb)
        for (int j0 = 0; j0 < cb; j0 += tb) {
            const float *src = in + (ptrdiff_t)i0 * ldi + j0;
            float *dst = out + (ptrdiff_t)j0 * ldo + i0;
#if GEMM_X86
            if (tb == 16) tr16x16(src, ldi, dst, ldo);
            else tr8x8(src, ldi, dst, ldo);
#else
            (void)src;
            (void)dst;
#endif
        }
    if (cb < cols) tr_scalar(rb, cols - cb, in + cb, ldi, out + (ptrdiff_t)cb * ldo, ldo);
    if (rb < rows) tr_scalar(rows - rb, cols, in + (ptrdiff_t)rb * ldi, ldi, out + rb, ldo);
}
