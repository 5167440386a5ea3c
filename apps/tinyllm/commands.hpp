// The subcommands of `tinyllm`. Each returns the process exit code; errors are thrown (UsageError,
// tinyllm::Error, NotImplemented) and turned into one "error: ..." line by main().
#pragma once

#include <filesystem>
#include <string>

#include "cli.hpp"
#include "tinyllm/config.hpp"

namespace tinyllm::app {

/// The model directory: --model, else $TINYLLM_MODEL_DIR, else the embedded model compiled in.
/// Throws tinyllm::FormatError if it is not an existing directory.
std::filesystem::path resolve_model_dir(const CommandLine& cl);

int run_chat(const CommandLine& cl);
int run_generate(const CommandLine& cl);
int run_tokenize(const CommandLine& cl);
int run_logits(const CommandLine& cl);
/// llama-bench-like prefill (ppN) and decode (tgN) tokens/s with chapter 2.1's KV cache
/// (bench.cpp).
int run_bench(const CommandLine& cl);

}  // namespace tinyllm::app
