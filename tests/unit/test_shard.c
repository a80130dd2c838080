/* test_shard.c — the shard layout (parallel/shard.h), without MPI: shards in rank order
 * covering the range, cut at slab blocks, balanced in blocks, folded ranks empty; worked
 * examples; the virtual-rank fold and its inverse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/common.h"
#include "core/slab.h"
#include "parallel/shard.h"

static void test_shard_layout(void **state)
{
    (void)state;
    const size_t los[] = {0, 1, 4095, 4096, 5000};
    const size_t lens[] = {0, 1, 4095, 4096, 4097, 8192, 5 * 4096 + 7, 40 * 4096, 123457};
    for (int size = 1; size <= 9; size++)
        for (size_t a = 0; a < sizeof los / sizeof *los; a++)
            for (size_t b = 0; b < sizeof lens / sizeof *lens; b++) {
                size_t lo = los[a], hi = lo + lens[b], prev = lo;
                int P = shard_pow2_floor(size), E = size - P;
                size_t minb = SIZE_MAX, maxb = 0;
                for (int r = 0; r < size; r++) {
                    size_t s0, s1;
                    shard_range(lo, hi, size, r, &s0, &s1);
                    assert_int_equal(s0, prev); /* in rank order, no gap */
                    assert_true(s1 >= s0 && s1 <= hi);
                    if (s0 != lo && s0 != hi) assert_int_equal(s0 % SLAB_BLOCK, 0);
                    if (s1 != lo && s1 != hi) assert_int_equal(s1 % SLAB_BLOCK, 0);
                    if (r < 2 * E && r % 2) {
                        assert_int_equal(s0, s1); /* folded away */
                    } else {
                        size_t nb = s1 > s0 ? (s1 - 1) / SLAB_BLOCK - s0 / SLAB_BLOCK + 1 : 0;
                        minb = MT_MIN(minb, nb);
                        maxb = MT_MAX(maxb, nb);
                    }
                    prev = s1;
                }
                assert_int_equal(prev, hi);
                assert_true(maxb - minb <= 1);
            }
    /* worked examples */
    size_t s0, s1;
    shard_range(0, 3 * 4096 + 5, 2, 0, &s0, &s1);
    assert_int_equal(s0, 0);
    assert_int_equal(s1, 8192);
    shard_range(0, 3 * 4096 + 5, 2, 1, &s0, &s1);
    assert_int_equal(s0, 8192);
    assert_int_equal(s1, 3 * 4096 + 5);
    shard_range(0, 3 * 4096 + 5, 3, 1, &s0, &s1);
    assert_int_equal(s0, 8192);
    assert_int_equal(s1, 8192);
    shard_range(100, 200, 4, 0, &s0, &s1); /* one block: rank 0 gets it all */
    assert_int_equal(s0, 100);
    assert_int_equal(s1, 200);
    shard_range(100, 200, 4, 3, &s0, &s1);
    assert_int_equal(s0, 200);
    assert_int_equal(s1, 200);
}

static void test_pow2_floor(void **state)
{
    (void)state;
    const int want[] = {0, 1, 2, 2, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 16};
    for (int n = 1; n <= 16; n++) assert_int_equal(shard_pow2_floor(n), want[n]);
    assert_int_equal(shard_pow2_floor(1 << 20), 1 << 20);
    assert_int_equal(shard_pow2_floor((1 << 20) - 1), 1 << 19);
}

/* N = 6: P = 4, E = 2: ranks 0+1 -> virtual 0, 2+3 -> 1, 4 -> 2, 5 -> 3. */
static void test_virtual_ranks(void **state)
{
    (void)state;
    const int virt6[] = {0, -1, 1, -1, 2, 3};
    for (int r = 0; r < 6; r++) assert_int_equal(shard_virt_rank(r, 6), virt6[r]);
    for (int size = 1; size <= 17; size++) {
        int P = shard_pow2_floor(size), seen = 0;
        for (int r = 0; r < size; r++) {
            int v = shard_virt_rank(r, size);
            if (v < 0) {
                assert_true(r % 2 == 1 && r < 2 * (size - P));
                continue;
            }
            assert_true(v < P);
            assert_int_equal(shard_real_rank(v, size), r);
            seen++;
        }
        assert_int_equal(seen, P);
        if (size == P)
            for (int r = 0; r < size; r++) assert_int_equal(shard_virt_rank(r, size), r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_layout),
        cmocka_unit_test(test_pow2_floor),
        cmocka_unit_test(test_virtual_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
