// The command line of `tinyllm`: flag parsing and validation. Kept apart from the commands so that
// every bad flag becomes one readable UsageError before anything is loaded.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "tinyllm/token.hpp"

namespace tinyllm::app {

/// A bad command line (unknown subcommand or flag, missing or malformed value). main() prints
/// "error: <message>" and exits with code 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The parsed command line: the subcommand and its --flag values ("--name value" or
/// "--name=value").
struct CommandLine {
  std::string command;  // "chat", "generate", "tokenize", "logits", "bench" or "help"
  // Flag values by name, without the leading "--"; "help" maps to "" when given.
  std::map<std::string, std::string> flags;
  bool has(const std::string& name) const { return flags.count(name) != 0; }
};

/// The flags a subcommand accepts (with or without a value) and its help text.
struct CommandSpec {
  std::string name;
  std::vector<std::string> value_flags;
  std::string help;
};

const std::vector<CommandSpec>& command_specs();
const CommandSpec* find_command(const std::string& name);
/// The overview printed by `tinyllm --help`.
std::string general_help(const std::string& program);

/// Parses argv (without the program name). Throws UsageError for an unknown subcommand or flag, a
/// flag given twice, or a flag that needs a value and has none.
CommandLine parse_command_line(const std::vector<std::string>& args);

/// Strict number parsing for flag values: the whole text must be the number. UsageError names
/// the flag.
int64_t parse_int(const std::string& flag, const std::string& text);
float parse_float(const std::string& flag, const std::string& text);
/// "1,2,3" -> {1, 2, 3}: comma-separated non-negative integers (spaces around them allowed).
TokenIds parse_ids(const std::string& flag, const std::string& text);

/// Sampling flags of `chat` and `generate`, validated:
///   --temperature >= 0, --top-k >= 0, 0 < --top-p <= 1, --seed >= 0,
///   --max-tokens >= 1 (absent: as many as fit, at most 256).
struct SamplingFlags {
  float temperature = 0.0f;
  int64_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  std::optional<int64_t> max_tokens;
};
SamplingFlags parse_sampling_flags(const CommandLine& cl);

/// Speculative-decoding flags of `chat` and `generate` (chapter 3.4), validated: --draft-model
/// DIR or --prompt-lookup N >= 1 (not both), --draft-tokens K >= 1 (default 4; only with one of
/// them), and neither with --no-kv-cache.
struct SpeculativeFlags {
  std::optional<std::string> draft_model;
  int64_t prompt_lookup = 0;  // the n-gram size; 0: off
  int64_t draft_tokens = 4;   // k
  bool enabled() const { return draft_model.has_value() || prompt_lookup > 0; }
};
SpeculativeFlags parse_speculative_flags(const CommandLine& cl);

}  // namespace tinyllm::app
