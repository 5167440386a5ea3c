// Error types of tiny-llm.cpp. Every bad input gets a specific type so that tests (and learners)
// can tell a wrong shape from a broken file from a chapter that is not written yet.
#pragma once

#include <stdexcept>
#include <string>

namespace tinyllm {

/// Base class of every error the engine reports about its inputs.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A tensor has the wrong rank or dimensions for the operation (e.g. H_q not a multiple of H).
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A dtype the engine does not know or cannot use here (e.g. "F8_E4M3" in a checkpoint, or an
/// integer dtype such as I16 where a model weight must be a floating-point one).
class DTypeError : public Error {
 public:
  using Error::Error;
};

/// A file is missing, truncated or malformed (safetensors header, JSON, fixture).
class FormatError : public Error {
 public:
  using Error::Error;
};

/// A model's config.json is readable but describes something invalid or unsupported.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// Tokenizer problems: bad tokenizer.json, an id outside the vocabulary, invalid UTF-8 input.
class TokenizerError : public Error {
 public:
  using Error::Error;
};

/// The prompt (plus the tokens to generate) does not fit into the model's context.
class ContextLengthError : public Error {
 public:
  using Error::Error;
};

/// A parameter outside its meaningful range (temperature < 0, top_p > 1, top_k < 0, ...).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// A bounded pool of KV-cache pages (chapter 3.1's PagePool) has no free page left and may not
/// mint another: the caller frees pages (finishes or preempts a request) or waits.
class OutOfPages : public Error {
 public:
  using Error::Error;
};

/// Numbers that must be finite are not: a NaN or an infinity in a checkpoint's weights (found by
/// Checkpoint's load-time scan) or in a model's logits during generation (check_finite_logits). The
/// message names where (tensor and file, or position and vocabulary id), the first bad index and
/// its value.
class NumericalError : public Error {
 public:
  using Error::Error;
};

/// Thrown by an exercise that the learner has not written yet. It derives directly from
/// std::exception (not from tinyllm::Error or std::logic_error) so that no error-path test can
/// mistake a stub for a correct rejection.
class NotImplemented : public std::exception {
 public:
  explicit NotImplemented(std::string message) : message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

}  // namespace tinyllm
