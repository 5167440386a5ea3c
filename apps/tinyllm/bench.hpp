// `tinyllm bench`'s shared flag parsing (bench.cpp) and its speculative mode
// (bench_speculative.cpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "engine/load_model.hpp"
#include "tinyllm/config.hpp"

namespace tinyllm::app {

/// "512" or "128,256" -> {512} or {128, 256}; every value >= min_value (UsageError otherwise);
/// default_value when the flag is absent.
std::vector<int64_t> parse_list(const CommandLine& cl, const std::string& flag,
                                int64_t default_value, int64_t min_value);

/// --precision f32,bf16,q8,q4 (--group-size for the quantized ones): the engine in each; absent:
/// model_choice's one choice (the course model, or the engine for an MLX checkpoint).
std::vector<std::optional<engine::EngineOptions>> parse_precisions(const CommandLine& cl,
                                                                   const std::filesystem::path& dir,
                                                                   const Qwen2Config& config);

/// bench --draft-model DIR | --prompt-lookup N: acceptance and decode speedup of chapter 3.4's
/// speculative decoding over the model alone (bench_speculative.cpp).
int run_bench_speculative(const CommandLine& cl);

}  // namespace tinyllm::app
