// Chapter 2.3 (provided, not an exercise): which SIMD code path a kernel runs, chosen at run time
// from what the CPU supports, and how many OpenMP threads it uses. Book:
// book/week2/ch2_3_fast_qmatmul.md.
#pragma once

#include <omp.h>

#include <string>
#include <vector>

#include "tinyllm/errors.hpp"

namespace tinyllm {

/// The code paths of the fast kernels. Auto picks the best one the CPU supports; the others force
/// one (tests run every available path, so that the portable fallback is checked on a machine that
/// has AVX-512 too).
///   Portable    plain C++ (any CPU)
///   Avx2        AVX2 + FMA, 8 floats per register
///   Avx512      AVX-512 F/BW/VL, 16 floats per register
///   Avx512Bf16  AVX-512 plus the BF16 dot-product instruction (bf16 kernels; the quantized ones
///   run Avx512)
enum class KernelPath { Auto, Portable, Avx2, Avx512, Avx512Bf16 };

inline std::string kernel_path_name(KernelPath path) {
  switch (path) {
    case KernelPath::Auto:
      return "auto";
    case KernelPath::Portable:
      return "portable";
    case KernelPath::Avx2:
      return "avx2";
    case KernelPath::Avx512:
      return "avx512";
    case KernelPath::Avx512Bf16:
      return "avx512bf16";
  }
  return "?";
}

/// Whether this CPU can run `path` (Auto and Portable always can).
inline bool kernel_path_supported(KernelPath path) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  switch (path) {
    case KernelPath::Avx2:
      return avx2;
    case KernelPath::Avx512:
      return avx512;
    case KernelPath::Avx512Bf16:
      return avx512 && __builtin_cpu_supports("avx512bf16");
    default:
      return true;
  }
#else
  return path == KernelPath::Auto || path == KernelPath::Portable;
#endif
}

/// Every concrete path this CPU supports, slowest first: {Portable, Avx2, Avx512, Avx512Bf16} or a
/// prefix of it.
inline std::vector<KernelPath> supported_kernel_paths() {
  std::vector<KernelPath> paths;
  for (KernelPath p :
       {KernelPath::Portable, KernelPath::Avx2, KernelPath::Avx512, KernelPath::Avx512Bf16}) {
    if (kernel_path_supported(p)) paths.push_back(p);
  }
  return paths;
}

/// Auto -> the best supported path; a forced path the CPU lacks -> InvalidArgument.
inline KernelPath resolve_kernel_path(KernelPath path) {
  if (path == KernelPath::Auto) return supported_kernel_paths().back();
  if (!kernel_path_supported(path)) {
    throw InvalidArgument("kernel path " + kernel_path_name(path) +
                          " is not supported by this CPU");
  }
  return path;
}

/// threads <= 0 -> OpenMP's default (OMP_NUM_THREADS or the number of cores).
inline int resolve_threads(int threads) {
  return threads > 0 ? threads : omp_get_max_threads();
}

}  // namespace tinyllm
