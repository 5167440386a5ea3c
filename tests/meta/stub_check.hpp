// Helpers of the red gate's meta test: a public stub must throw NotImplemented whose message names its chapter.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tinyllm/errors.hpp"

/// Runs `statement` (a call of a stub with valid arguments) and checks that it throws NotImplemented with a
/// message "TODO(<chapter> Task ...)". Any other outcome fails the test.
#define EXPECT_STUB_THROWS_TODO(chapter, statement)                                          \
  do {                                                                                      \
    try {                                                                                   \
      statement;                                                                            \
      ADD_FAILURE() << #statement << " returned; a pristine stub must throw NotImplemented"; \
    } catch (const ::tinyllm::NotImplemented& error) {                                      \
      EXPECT_THAT(std::string(error.what()), ::testing::HasSubstr("TODO(" chapter " Task")) \
          << #statement;                                                                    \
    }                                                                                       \
  } while (false)
