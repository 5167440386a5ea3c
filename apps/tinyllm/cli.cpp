#include "cli.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace tinyllm::app {
namespace {

const char* const kModelHelp =
    "  --model DIR         a Hugging Face Qwen2 directory (config.json, *.safetensors, "
    "tokenizer.json);\n"
    "                      default: $TINYLLM_MODEL_DIR, else the embedded data/models/tiny-qwen2\n"
    "  --check-tensors W   scan the weights for NaN and infinity as they load: auto (default: "
    "below\n"
    "                      2 GiB of weights), always, never (as llama.cpp's --check-tensors)\n";

const char* const kSamplingHelp =
    "  --temperature T     0 = greedy (default); > 0 samples from softmax(logits / T)\n"
    "  --top-k K           keep the K most likely tokens (0 = off, default)\n"
    "  --top-p P           keep the smallest set of tokens with probability >= P, 0 < P <= 1 (1 = "
    "off)\n"
    "  --seed S            seed of the sampler's random numbers (default 0)\n"
    "  --max-tokens N      generate at most N tokens (default: up to 256, as many as fit in the "
    "context)\n"
    "  --kv-cache          generate with chapter 2.1's KV cache (prefill once, then one token per "
    "step;\n"
    "                      the default when this build has chapter 2.1 from the reference)\n"
    "  --no-kv-cache       recompute the whole sequence for every token (chapter 1.6)\n";

const char* const kEngineHelp =
    "  --dtype f32|bf16    run the engine (engine/: chapter 2.3's kernels, chapter 2.5's "
    "attention)\n"
    "                      with f32 weights or with bf16 weights as stored in the checkpoint\n"
    "  --quantize q8|q4    run the engine with weights quantized at load (chapter 2.2's MLX "
    "format;\n"
    "                      q4's output head stays q8)\n"
    "  --group-size G      the quantization group size: 32, 64 or 128 (default 32 for q8, 64 for "
    "q4)\n"
    "                      (an MLX quantized checkpoint, config.json \"quantization\", runs on the "
    "engine\n"
    "                      with its stored weights, without these flags)\n";

const char* const kSpeculativeHelp =
    "  --draft-model DIR   speculative decoding (chapter 3.4): a small draft model with the same\n"
    "                      tokenizer proposes tokens, the model verifies them in one call per "
    "round;\n"
    "                      greedy output is unchanged, sampled output follows the same "
    "distribution\n"
    "                      (the draft runs with the same --dtype/--quantize as the model)\n"
    "  --prompt-lookup N   speculative decoding without a draft: propose the tokens that followed\n"
    "                      the last N tokens where they occurred earlier in the prompt or answer\n"
    "  --draft-tokens K    tokens proposed per round (default 4); the acceptance rate goes to "
    "stderr\n";

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t");
  return s.substr(begin, end - begin + 1);
}

}  // namespace

const std::vector<CommandSpec>& command_specs() {
  static const std::vector<CommandSpec> specs = {
      {"chat",
       {"model", "check-tensors", "prompt", "system", "temperature", "top-k", "top-p", "seed",
        "max-tokens", "kv-cache", "no-kv-cache", "dtype", "quantize", "group-size", "draft-model",
        "draft-tokens", "prompt-lookup"},
       std::string(
           "usage: tinyllm chat [--prompt TEXT] [--system TEXT] [options]\n\n"
           "Chats with the model through the Qwen2 chat template, streaming the answer to stdout.\n"
           "With --prompt: one question, one answer. Without: an interactive conversation that "
           "reads one\n"
           "message per line from stdin until end of input or /exit, keeping the history across "
           "turns.\n"
           "Token counts and tokens/s go to stderr.\n\n"
           "options:\n"
           "  --prompt TEXT       the user's message (one-shot mode)\n"
           "  --system TEXT       the system prompt (default \"You are a helpful assistant.\")\n") +
           kSamplingHelp + kSpeculativeHelp + kEngineHelp + kModelHelp},
      {"generate",
       {"model", "check-tensors", "prompt", "temperature", "top-k", "top-p", "seed", "max-tokens",
        "kv-cache", "no-kv-cache", "dtype", "quantize", "group-size", "draft-model", "draft-tokens",
        "prompt-lookup"},
       std::string(
           "usage: tinyllm generate --prompt TEXT [options]\n\n"
           "Continues raw text (no chat template), streaming the continuation to stdout.\n\n"
           "options:\n"
           "  --prompt TEXT       the text to continue (required)\n") +
           kSamplingHelp + kSpeculativeHelp + kEngineHelp + kModelHelp},
      {"tokenize",
       {"model", "text"},
       std::string("usage: tinyllm tokenize --text TEXT [--model DIR]\n\n"
                   "Prints the token ids of TEXT as a JSON array (special tokens such as "
                   "<|im_end|> in the text\n"
                   "are recognised). Needs only the model directory's tokenizer.json.\n\n"
                   "options:\n"
                   "  --text TEXT         the text to encode (required)\n") +
           kModelHelp},
      {"logits",
       {"model", "check-tensors", "ids", "out", "dtype", "quantize", "group-size", "fast"},
       std::string(
           "usage: tinyllm logits --ids 1,2,3 --out FILE [--model DIR]\n\n"
           "Runs the model once on the ids (a batch of one) and writes the logits of every "
           "position,\n"
           "L x V, to FILE: FILE.safetensors gets the f32 tensor \"logits\" [L, V] and the int64 "
           "tensor\n"
           "\"ids\" [L]; FILE.json gets {\"ids\": [...], \"shape\": [L, V], \"logits\": [[...], "
           "...]}.\n"
           "Compare them with Hugging Face's model(input_ids).logits[0]. Needs no tokenizer.\n\n"
           "options:\n"
           "  --ids LIST          comma-separated token ids (required)\n"
           "  --out FILE          output file, .safetensors or .json (required)\n"
           "  --dtype, --quantize run the engine with these weights (as chat; an MLX checkpoint\n"
           "                      always runs on the engine). The engine computes with its exact\n"
           "                      kernels (f32 activations) unless --fast\n"
           "  --fast              the engine's fast kernels (int8 / bf16 activations), as chat "
           "runs them\n") +
           kModelHelp},
      {"bench",
       {"model", "check-tensors", "n-prompt", "n-gen", "threads", "repetitions", "json", "seed",
        "precision", "group-size", "parallel", "draft-model", "draft-tokens", "prompt-lookup",
        "prompts-file"},
       std::string(
           "usage: tinyllm bench [--model DIR] [-p 512] [-n 128] [-t 1,2] [-r 5] [--json FILE]\n\n"
           "Measures like llama-bench: prefill of -p random token ids in one call (test ppN) and\n"
           "decode of -n tokens one at a time with the KV cache (test tgN), each from empty "
           "caches,\n"
           "after one warm-up run, repeated -r times; prints tokens/s as mean +- stddev. -p, -n "
           "and\n"
           "-t take comma-separated lists; 0 skips a test. Threads: OpenMP and Eigen.\n\n"
           "options:\n"
           "  -p, --n-prompt N    prompt lengths (default 512)\n"
           "  -n, --n-gen N       decode lengths (default 128)\n"
           "  -t, --threads N     thread counts (default: all cores)\n"
           "  -r, --repetitions N repetitions of each test (default 5)\n"
           "  --seed S            seed of the random token ids (default 0)\n"
           "  --precision LIST    run the engine (engine/) with these weights, e.g. "
           "f32,bf16,q8,q4\n"
           "                      (default: chapter 2.1's model, f32); pp computes the last "
           "position's logits\n"
           "  --group-size G      group size of q8/q4 (default 32 for q8, 64 for q4)\n"
           "  --parallel R        also decode R sequences together (test tgN xR, aggregate "
           "tokens/s;\n"
           "                      a list: 1,4,8), one forward_sequences step per token\n"
           "  --json FILE         also write the results as JSON\n\n"
           "speculative mode (chapter 3.4), with --draft-model DIR or --prompt-lookup N:\n"
           "  greedy answers to the chat prompts of --prompts-file (JSONL records with "
           "\"messages\",\n"
           "  or one user message per line), up to -n tokens each (stopping at <|im_end|>), first "
           "by\n"
           "  the model alone (chapter 2.1), then speculatively for each K of --draft-tokens "
           "(default\n"
           "  2,4,6); reports the acceptance rate, decode tokens/s (first to last token) and the\n"
           "  speedup over the model alone, and checks that every answer is the same\n"
           "  --draft-model DIR   the draft model (same tokenizer, same --precision)\n"
           "  --prompt-lookup N   n-gram drafting instead of a draft model\n"
           "  --draft-tokens LIST tokens proposed per round, e.g. 2,4,6\n"
           "  --prompts-file FILE the prompts (required in this mode)\n") +
           kModelHelp},
      {"batch",
       {"model", "check-tensors", "prompt", "prompts-file", "system", "batch-size", "prefill-chunk",
        "max-tokens", "check", "dtype", "quantize", "group-size", "paged", "page-size", "kv-pages",
        "prefix-cache"},
       std::string(
           "usage: tinyllm batch [--prompts-file FILE | --prompt TEXT ...] [options]\n\n"
           "Answers N chat prompts together: continuous batching (chapter 2.6) with chunked "
           "prefill\n"
           "(chapter 2.7), greedy. Shows one line per slot while it runs (redrawn on a terminal), "
           "then\n"
           "every answer and a summary: prefill and decode tokens/s, time to first token, time "
           "per\n"
           "output token. Without prompts: 16 built-in questions for the embedded model.\n\n"
           "options:\n"
           "  --prompts-file FILE one user message per line (blank lines are skipped)\n"
           "  --prompt TEXT       a user message; repeat the flag for more\n"
           "  --batch-size N      request slots decoding together (default 4)\n"
           "  --prefill-chunk N   prompt tokens prefilled per iteration (default 32)\n"
           "  --max-tokens N      new tokens per request at most (default 64)\n"
           "  --system TEXT       a system message before every prompt (default: the chat "
           "template's)\n"
           "  --check             re-run every request alone (chapter 2.1) and exit 1 if any "
           "differs\n"
           "  --paged             paged KV caches (chapter 3.1) on the engine (f32 unless "
           "--dtype/--quantize),\n"
           "                      pages allocated as sequences grow, preemption when the pool "
           "runs out\n"
           "  --page-size N       positions per page (default 16)\n"
           "  --kv-pages N        pool size in pages, one page per layer per block (default: "
           "batch size x\n"
           "                      context positions' worth)\n"
           "  --prefix-cache      share the pages of equal prompt prefixes between requests "
           "(needs --paged)\n") +
           kEngineHelp + kModelHelp},
  };
  return specs;
}

namespace {

// Flags that take no value: the switches.
bool is_switch(const std::string& name) {
  return name == "kv-cache" || name == "no-kv-cache" || name == "check" || name == "fast" ||
         name == "paged" || name == "prefix-cache";
}

// llama-bench's short flags of `bench`: -p, -n, -t, -r.
std::string long_name(const std::string& command, const std::string& arg) {
  if (command != "bench") return "";
  if (arg == "-p") return "n-prompt";
  if (arg == "-n") return "n-gen";
  if (arg == "-t") return "threads";
  if (arg == "-r") return "repetitions";
  return "";
}

}  // namespace

const CommandSpec* find_command(const std::string& name) {
  for (const auto& spec : command_specs()) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

std::string general_help(const std::string& program) {
  return "usage: " + program +
         " <command> [options]\n\n"
         "A small Qwen2 inference engine (tiny-llm.cpp).\n\n"
         "commands:\n"
         "  chat       chat with the model (interactive, or one-shot with --prompt)\n"
         "  generate   continue raw text, no chat template\n"
         "  tokenize   print the token ids of a text as JSON\n"
         "  logits     write the logits of every position to a .safetensors or .json file\n"
         "  bench      measure prefill and decode tokens/s (like llama-bench)\n"
         "  batch      answer many prompts together (continuous batching, chunked prefill)\n\n"
         "Run `" +
         program + " <command> --help` for a command's options.\n";
}

CommandLine parse_command_line(const std::vector<std::string>& args) {
  CommandLine cl;
  if (args.empty()) throw UsageError("no command given (try --help)");
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    cl.command = "help";
    if (args.size() > 1) cl.flags["topic"] = args[1];
    return cl;
  }
  const CommandSpec* spec = find_command(args[0]);
  if (spec == nullptr) {
    throw UsageError("unknown command '" + args[0] +
                     "' (commands: chat, generate, tokenize, logits, bench, batch)");
  }
  cl.command = spec->name;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      cl.flags["help"] = "";
      continue;
    }
    std::string name, value;
    bool has_value = false;
    if (const std::string alias = long_name(cl.command, arg); !alias.empty()) {
      name = alias;
    } else if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      throw UsageError(cl.command + ": unexpected argument '" + arg +
                       "' (flags look like --name VALUE)");
    } else {
      name = arg.substr(2);
      if (const auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
    }
    const auto& allowed = spec->value_flags;
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      throw UsageError(cl.command + ": unknown option --" + name + " (see " + cl.command +
                       " --help)");
    }
    if (is_switch(name)) {
      if (has_value) throw UsageError("--" + name + " takes no value");
    } else if (!has_value) {
      if (i + 1 >= args.size()) throw UsageError("--" + name + " needs a value");
      value = args[++i];
    }
    if (cl.command == "batch" && name == "prompt" && cl.flags.count(name) != 0) {
      cl.flags[name] += "\n" + value;  // batch takes several prompts, one per --prompt
      continue;
    }
    if (cl.flags.count(name) != 0) throw UsageError("--" + name + " is given twice");
    cl.flags[name] = value;
  }
  return cl;
}

int64_t parse_int(const std::string& flag, const std::string& text) {
  const std::string t = trim(text);
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size()) {
    throw UsageError("--" + flag + ": '" + text + "' is not an integer");
  }
  return value;
}

float parse_float(const std::string& flag, const std::string& text) {
  const std::string t = trim(text);
  char* end = nullptr;
  const double value = t.empty() ? 0.0 : std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size()) {
    throw UsageError("--" + flag + ": '" + text + "' is not a number");
  }
  if (!std::isfinite(value) || std::fabs(value) > std::numeric_limits<float>::max()) {
    throw UsageError("--" + flag + ": '" + text + "' is not a finite number");
  }
  return static_cast<float>(value);
}

TokenIds parse_ids(const std::string& flag, const std::string& text) {
  TokenIds ids;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string item =
        trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    int64_t value = -1;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || value < 0 ||
        value > std::numeric_limits<TokenId>::max()) {
      throw UsageError(
          "--" + flag + ": '" + item + "' in '" + text +
          "' is not a token id (expected comma-separated non-negative integers like 1,2,3)");
    }
    ids.push_back(static_cast<TokenId>(value));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ids;
}

SpeculativeFlags parse_speculative_flags(const CommandLine& cl) {
  SpeculativeFlags s;
  if (cl.has("draft-model") && cl.has("prompt-lookup")) {
    throw UsageError("--draft-model and --prompt-lookup contradict each other (pick one drafter)");
  }
  if (cl.has("draft-model")) {
    s.draft_model = cl.flags.at("draft-model");
    if (s.draft_model->empty()) throw UsageError("--draft-model: the directory is empty");
  }
  if (cl.has("prompt-lookup")) {
    s.prompt_lookup = parse_int("prompt-lookup", cl.flags.at("prompt-lookup"));
    if (s.prompt_lookup < 1) {
      throw UsageError("--prompt-lookup must be >= 1 (the n-gram size), got " +
                       cl.flags.at("prompt-lookup"));
    }
  }
  if (cl.has("draft-tokens")) {
    if (!s.enabled())
      throw UsageError("--draft-tokens needs --draft-model DIR or --prompt-lookup N");
    s.draft_tokens = parse_int("draft-tokens", cl.flags.at("draft-tokens"));
    if (s.draft_tokens < 1) {
      throw UsageError("--draft-tokens must be >= 1, got " + cl.flags.at("draft-tokens"));
    }
  }
  if (s.enabled() && cl.has("no-kv-cache")) {
    throw UsageError(
        "speculative decoding (--draft-model, --prompt-lookup) needs the KV cache; "
        "drop --no-kv-cache");
  }
  return s;
}

SamplingFlags parse_sampling_flags(const CommandLine& cl) {
  SamplingFlags s;
  if (cl.has("temperature")) {
    s.temperature = parse_float("temperature", cl.flags.at("temperature"));
    if (s.temperature < 0.0f) {
      throw UsageError("--temperature must be >= 0 (0 means greedy), got " +
                       cl.flags.at("temperature"));
    }
  }
  if (cl.has("top-k")) {
    s.top_k = parse_int("top-k", cl.flags.at("top-k"));
    if (s.top_k < 0)
      throw UsageError("--top-k must be >= 0 (0 turns it off), got " + cl.flags.at("top-k"));
  }
  if (cl.has("top-p")) {
    s.top_p = parse_float("top-p", cl.flags.at("top-p"));
    if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {
      throw UsageError("--top-p must be in (0, 1] (1 turns it off), got " + cl.flags.at("top-p"));
    }
  }
  if (cl.has("seed")) {
    const int64_t seed = parse_int("seed", cl.flags.at("seed"));
    if (seed < 0) throw UsageError("--seed must be >= 0, got " + cl.flags.at("seed"));
    s.seed = static_cast<uint64_t>(seed);
  }
  if (cl.has("max-tokens")) {
    s.max_tokens = parse_int("max-tokens", cl.flags.at("max-tokens"));
    if (*s.max_tokens < 1)
      throw UsageError("--max-tokens must be >= 1, got " + cl.flags.at("max-tokens"));
  }
  return s;
}

}  // namespace tinyllm::app
