// The SDK's MessagePack codec of call arguments and results (declared in serve/handle.h). Kept
// apart from sdk.cc so that tests/fuzz can build it on its own.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <serve/handle.h>

namespace serve::detail {

std::string EncodeMsgpack(const Json& value) {
  std::vector<std::uint8_t> bytes = Json::to_msgpack(value);
  return std::string(bytes.begin(), bytes.end());
}

Json DecodeMsgpack(const std::string& bytes) {
  Json j = Json::from_msgpack(bytes, /*strict=*/true, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw std::invalid_argument("malformed msgpack payload");
  return j;
}

}  // namespace serve::detail
