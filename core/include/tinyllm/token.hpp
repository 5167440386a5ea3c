// Token ids, as the tokenizer produces them and the model consumes them.
#pragma once

#include <cstdint>
#include <vector>

namespace tinyllm {

using TokenId = int32_t;
/// One sequence of token ids (length L).
using TokenIds = std::vector<TokenId>;

}  // namespace tinyllm
