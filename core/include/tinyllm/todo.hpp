// The TODO machinery: every exercise body in week*/ is a single TINYLLM_TODO line until the learner
// writes it.
#pragma once

#include "tinyllm/errors.hpp"

namespace tinyllm::detail {

/// Throws NotImplemented with a message such as
///   TODO(ch1.1 Task 2): tinyllm::linear is not implemented yet
///   (week1/ch1_1_attention/attention.hpp:41); see book/week1/ch1_1_attention.md
[[noreturn]] void throw_todo(const char* chapter, const char* task, const char* function,
                             const char* file, int line);

}  // namespace tinyllm::detail

/// Marks an unwritten exercise. `chapter` is "ch1.1", `task` is "Task 2".
#define TINYLLM_TODO(chapter, task) \
  ::tinyllm::detail::throw_todo(chapter, task, __PRETTY_FUNCTION__, __FILE__, __LINE__)
