/* CPU dispatch: the one place that says how a kernel gets an AVX2 version.
 *
 * Two idioms, both x86-64 only and both harmless elsewhere:
 *   CPU_CLONES        whole function compiled twice (AVX2 and baseline),
 *                     picked by the loader through an ifunc resolver;
 *   CPU_TARGET_AVX2   one function compiled for AVX2 only, which the caller
 *                     guards with cpu_has_avx2() (for hand-written paths
 *                     that a test may also force off).
 * AVX2 alone brings no fused multiply-add and the ISO C build mode turns off
 * contraction, so the AVX2 and baseline versions round identically.
 * -Dcpu_dispatch=false (BNN_NO_CLONES) drops the clones: ThreadSanitizer's
 * runtime cannot run ifunc resolvers, which execute before it starts. */
#ifndef BNN_CPU_H
#define BNN_CPU_H

#if defined(__x86_64__) && defined(__ELF__) && defined(__has_attribute)
/* clang 14 names the clones f.ifunc, so calls from other files do not link. */
#if __has_attribute(target_clones) && !defined(BNN_NO_CLONES) && \
    (!defined(__clang__) || __clang_major__ >= 15)
#define CPU_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef CPU_CLONES
#define CPU_CLONES
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CPU_HAVE_AVX2_PATH 1
#define CPU_TARGET_AVX2 __attribute__((target("avx2")))
static inline int cpu_has_avx2(void)
{
    return __builtin_cpu_supports("avx2") != 0;
}
#else
#define CPU_HAVE_AVX2_PATH 0
#define CPU_TARGET_AVX2
static inline int cpu_has_avx2(void)
{
    return 0;
}
#endif

#endif
