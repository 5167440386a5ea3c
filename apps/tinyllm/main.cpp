// tinyllm: chat, generate, tokenize and logits on a Hugging Face Qwen2 checkpoint. Built twice from
// these sources (apps/CMakeLists.txt): `tinyllm` runs the configured chapter trees (the learner's
// code by default), `tinyllm-ref` always runs the reference solution.
//
// Exit codes: 0 success; 2 a bad command line, model directory or input ("error: ..." on one stderr
// line); 3 a chapter the learner has not written yet (the TODO message); 1 anything unexpected.
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"
#include "tinyllm/errors.hpp"

#ifndef TINYLLM_APP_NAME
#define TINYLLM_APP_NAME "tinyllm"
#endif

namespace tinyllm::app {
/// `tinyllm batch` (batch.cpp).
int run_batch(const CommandLine& cl);
}  // namespace tinyllm::app

namespace {

// Error messages go out as one line.
std::string one_line(std::string message) {
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return message;
}

int run(const std::vector<std::string>& args) {
  using namespace tinyllm::app;
  const CommandLine cl = parse_command_line(args);
  if (cl.command == "help") {
    const auto topic = cl.flags.find("topic");
    const CommandSpec* spec = topic == cl.flags.end() ? nullptr : find_command(topic->second);
    std::cout << (spec != nullptr ? spec->help : general_help(TINYLLM_APP_NAME));
    return 0;
  }
  if (cl.has("help")) {
    std::cout << find_command(cl.command)->help;
    return 0;
  }
  if (cl.command == "chat") return run_chat(cl);
  if (cl.command == "generate") return run_generate(cl);
  if (cl.command == "tokenize") return run_tokenize(cl);
  if (cl.command == "bench") return run_bench(cl);
  if (cl.command == "batch") return run_batch(cl);
  return run_logits(cl);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    return run(args);
  } catch (const tinyllm::app::UsageError& e) {
    std::cerr << "error: " << one_line(e.what()) << std::endl;
    return 2;
  } catch (const tinyllm::Error& e) {
    std::cerr << "error: " << one_line(e.what()) << std::endl;
    return 2;
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << "error: " << one_line(e.what()) << std::endl;
    return 2;
  } catch (const tinyllm::NotImplemented& e) {
    std::cerr << "error: " << one_line(e.what()) << std::endl;
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "error: unexpected failure: " << one_line(e.what()) << std::endl;
    return 1;
  }
}
