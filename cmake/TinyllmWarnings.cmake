# Warnings, sanitizers and optimisation flags shared by every target of the project.
add_library(tinyllm_flags INTERFACE)
target_compile_options(tinyllm_flags INTERFACE -Wall -Wextra -Wpedantic
                                                 # Stubs leave parameters unused until the learner writes them.
                                                 -Wno-unused-parameter)
if(TINYLLM_WERROR)
  # GCC 12 reports false "(may be) used uninitialized" inside its own AVX-512 intrinsic headers (their
  # `__m512 __Y = __Y;` idiom for an undefined register, e.g. in _mm512_reduce_add_ps) and Eigen at -O1 and
  # above: keep the warnings visible, but not fatal.
  target_compile_options(tinyllm_flags INTERFACE -Werror
                                                 $<$<CXX_COMPILER_ID:GNU>:-Wno-error=maybe-uninitialized>
                                                 $<$<CXX_COMPILER_ID:GNU>:-Wno-error=uninitialized>)
endif()
if(TINYLLM_SANITIZE)
  target_compile_options(tinyllm_flags INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
                                                 -fno-sanitize-recover=undefined)
  target_link_options(tinyllm_flags INTERFACE -fsanitize=address,undefined)
endif()
if(TINYLLM_NATIVE)
  target_compile_options(tinyllm_flags INTERFACE -march=native)
endif()
target_link_libraries(tinyllm_flags INTERFACE OpenMP::OpenMP_CXX)
