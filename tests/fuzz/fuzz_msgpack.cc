// Fuzzes the SDK's MessagePack decoder (serve::detail::DecodeMsgpack, which decodes call
// arguments and results). Checks: malformed input is rejected with std::invalid_argument and
// nothing else; a decoded value encodes and decodes back to itself; typed reads of the value
// as a replica does them (detail::FromJson<T>) fail only with JSON type errors.

#include <cstdint>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "serve/handle.h"
#include "fuzz_check.h"

namespace {
using Json = nlohmann::json;


std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

template <class T>
void TryGet(const Json& j) {
  try {
    (void)serve::detail::FromJson<T>(j);
  } catch (const Json::exception&) {
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  Json value;
  try {
    value = serve::detail::DecodeMsgpack(bytes);
  } catch (const std::invalid_argument&) {
    return 0;
  }
  Json again = serve::detail::DecodeMsgpack(serve::detail::EncodeMsgpack(value));
  CHECK(Dump(again) == Dump(value));
  TryGet<int>(value);
  TryGet<double>(value);
  TryGet<std::string>(value);
  TryGet<std::vector<std::string>>(value);
  TryGet<std::map<std::string, int>>(value);
  TryGet<std::map<std::string, double>>(value);
  TryGet<std::vector<int>>(value);
  TryGet<std::vector<std::vector<uint8_t>>>(value);
  TryGet<float>(value);
  TryGet<uint8_t>(value);
  TryGet<int64_t>(value);
  TryGet<uint64_t>(value);
  TryGet<std::vector<std::vector<double>>>(value);
  return 0;
}
