/* fuzz_seeds.h — what the seed generator (gen_seeds.c) and the harnesses agree on. */
#ifndef MPITRAIN_TESTS_FUZZ_SEEDS_H
#define MPITRAIN_TESTS_FUZZ_SEEDS_H

/* The model of the checkpoint seeds (tests/fuzz/ckpt/): small, so a seed is a few KB. */
#define FUZZ_CKPT_SPEC "dense:4 relu dense:3"
#define FUZZ_CKPT_IN 5

#endif
