// Helpers of the red gate's meta test: a public stub must throw NotImplemented whose message names
// its chapter.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tinyllm/errors.hpp"

/// Runs `statement` (a call of a stub with valid arguments) and checks that it throws
/// NotImplemented with a message "TODO(<chapter> Task ...)". Any other outcome fails the test.
#define EXPECT_STUB_THROWS_TODO(chapter, statement)                                          \
  do {                                                                                       \
    try {                                                                                    \
      statement;                                                                             \
      ADD_FAILURE() << #statement << " returned; a pristine stub must throw NotImplemented"; \
    } catch (const ::tinyllm::NotImplemented& error) {                                       \
      EXPECT_THAT(std::string(error.what()), ::testing::HasSubstr("TODO(" chapter " Task"))  \
          << #statement;                                                                     \
    }                                                                                        \
  } while (false)

/// For a class whose constructor builds an earlier chapter's pieces first (Qwen2MultiHeadAttention
/// builds a RoPE): on pristine stubs the earliest chapter's TODO fires, so any TODO of the same
/// week ("TODO(ch1.") passes.
#define EXPECT_STUB_THROWS_WEEK_TODO(week_prefix, statement)                                 \
  do {                                                                                       \
    try {                                                                                    \
      statement;                                                                             \
      ADD_FAILURE() << #statement << " returned; a pristine stub must throw NotImplemented"; \
    } catch (const ::tinyllm::NotImplemented& error) {                                       \
      EXPECT_THAT(std::string(error.what()), ::testing::HasSubstr("TODO(" week_prefix))      \
          << #statement;                                                                     \
    }                                                                                        \
  } while (false)
