#include "tinyllm/todo.hpp"

#include <string>

namespace tinyllm::detail {
namespace {

// "/abs/path/week1/ch1_1_attention/attention.hpp" -> "week1/ch1_1_attention/attention.hpp"
std::string path_from_week(const std::string& file) {
  for (const char* week : {"week1/", "week2/", "week3/"}) {
    const auto at = file.rfind(week);
    if (at != std::string::npos) return file.substr(at);
  }
  return file;
}

// "week1/ch1_1_attention/attention.hpp" -> "book/week1/ch1_1_attention.md"
std::string book_page(const std::string& relative) {
  const auto slash = relative.rfind('/');
  if (slash == std::string::npos || relative.rfind("week", 0) != 0) return "book/README.md";
  return "book/" + relative.substr(0, slash) + ".md";
}

// "std::vector<float> tinyllm::softmax(const Tensor&, int)" -> "tinyllm::softmax"
std::string short_name(const std::string& pretty) {
  const auto paren = pretty.find('(');
  std::string head = pretty.substr(0, paren);
  const auto space = head.rfind(' ');
  return space == std::string::npos ? head : head.substr(space + 1);
}

}  // namespace

void throw_todo(const char* chapter, const char* task, const char* function, const char* file,
                int line) {
  const std::string relative = path_from_week(file);
  throw NotImplemented(std::string("TODO(") + chapter + " " + task + "): " + short_name(function) +
                       " is not implemented yet (" + relative + ":" + std::to_string(line) +
                       "); see " + book_page(relative));
}

}  // namespace tinyllm::detail
