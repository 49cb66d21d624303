#include "config/yaml_json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "config/limits.h"

namespace serve::config::detail {
namespace {

using json = nlohmann::json;

}  // namespace

std::string Join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

std::string Index(const std::string& prefix, size_t i) { return absl::StrCat(prefix, "[", i, "]"); }

std::string Parent(const std::string& path) {
  size_t pos = path.find_last_of(".[");
  return pos == std::string::npos ? std::string() : path.substr(0, pos);
}

json ResolvePlainScalar(const std::string& s) {
  static const std::set<std::string> kNull = {"", "~", "null", "Null", "NULL"};
  static const std::set<std::string> kTrue = {"true", "True", "TRUE", "yes", "Yes",
                                              "YES",  "on",   "On",   "ON"};
  static const std::set<std::string> kFalse = {"false", "False", "FALSE", "no", "No",
                                               "NO",    "off",   "Off",   "OFF"};
  static const std::regex kDecimal("[-+]?(0|[1-9][0-9_]*)");
  static const std::regex kHex("[-+]?0x[0-9a-fA-F_]+");
  static const std::regex kOctal("[-+]?0o[0-7_]+");
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9][0-9_]*(\\.[0-9_]*)?)([eE][-+]?[0-9]+)?");
  static const std::regex kInf("[-+]?\\.(inf|Inf|INF)");
  static const std::regex kNan("\\.(nan|NaN|NAN)");

  if (kNull.count(s)) return nullptr;
  if (kTrue.count(s)) return true;
  if (kFalse.count(s)) return false;

  auto strip = [](const std::string& in) {
    std::string out;
    for (char c : in) {
      if (c != '_') out.push_back(c);
    }
    return out;
  };
  auto parse_int = [&](std::string digits, int base) -> std::optional<json> {
    bool negative = false;
    if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
      negative = digits[0] == '-';
      digits.erase(0, 1);
    }
    if (base != 10) digits.erase(0, 2);  // 0x / 0o
    digits = strip(digits);
    if (digits.empty()) return std::nullopt;
    uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
    if (ec != std::errc() || ptr != digits.data() + digits.size()) return std::nullopt;
    if (!negative) {
      if (value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return json(static_cast<int64_t>(value));
      }
      return json(value);
    }
    if (value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) {
      return json(static_cast<int64_t>(0 - value));
    }
    return std::nullopt;
  };

  if (std::regex_match(s, kDecimal)) {
    if (auto v = parse_int(s, 10)) return *v;
  } else if (std::regex_match(s, kHex)) {
    if (auto v = parse_int(s, 16)) return *v;
  } else if (std::regex_match(s, kOctal)) {
    if (auto v = parse_int(s, 8)) return *v;
  }
  if (std::regex_match(s, kDecimal) || std::regex_match(s, kFloat)) {
    std::string digits = strip(s);
    if (!digits.empty() && digits[0] == '+') digits.erase(0, 1);
    double value = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ptr == digits.data() + digits.size() &&
        (ec == std::errc() || ec == std::errc::result_out_of_range)) {
      return value;
    }
  }
  if (std::regex_match(s, kInf)) {
    return s[0] == '-' ? -std::numeric_limits<double>::infinity()
                       : std::numeric_limits<double>::infinity();
  }
  if (std::regex_match(s, kNan)) return std::numeric_limits<double>::quiet_NaN();
  return s;
}

namespace {

/// A quoted scalar as read: yaml-cpp decodes the escapes `\N` (U+0085) and `\_` (U+00A0) to
/// one raw byte (0x85, 0xA0) instead of UTF-8. The text was checked to be UTF-8 before
/// parsing, and every other escape yields whole UTF-8 sequences, so such a byte where a
/// sequence should start can only come from those two: it is re-encoded as UTF-8. Escapes may
/// give control characters, but not what no YAML writer can write back (surrogates, U+FFFE,
/// U+FFFF, code points above U+10FFFF): those are an error naming `path`.
absl::StatusOr<std::string> DecodedScalar(std::string s, const std::string& path) {
  auto cont = [&](size_t k) {
    return k < s.size() && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80;
  };
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    bool whole = len > 0;
    for (size_t k = 1; whole && k < len; ++k) whole = cont(i + k);
    if (whole) {
      i += len;
    } else if (c == 0x85 || c == 0xA0) {
      s.insert(i, 1, '\xC2');
      i += 2;
    } else {
      ++i;  // refused below
    }
  }
  for (size_t i = 0; i < s.size();) {
    size_t bad = limits::UnacceptableYamlCharOffset(std::string_view(s).substr(i));
    if (bad == std::string_view::npos) break;
    i += bad;
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;  // a C0 control or DEL, from an escape
    } else if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xA0) {
      i += 2;  // a C1 control, from an escape
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          path.empty() ? "config" : path,
          ": an escape sequence gives a character a config may not hold (byte 0x",
          absl::Hex(c), " at offset ", i, "): a surrogate, U+FFFE, U+FFFF or above U+10FFFF"));
    }
  }
  return s;
}

absl::Status TooManyNodes() {
  return absl::InvalidArgumentError(
      absl::StrCat("config: more than ", limits::kMaxYamlNodes,
                   " values after expanding YAML aliases (an alias bomb?)"));
}

/// Whether `node` expands to at most `budget` nodes (aliases counted at every use); stops as
/// soon as the budget is spent, so an alias bomb costs at most `budget` steps and no memory.
/// Below the nesting bound it does not descend: the conversion reports that depth.
bool WithinNodeBudget(const YAML::Node& node, size_t& budget, int depth = 0) {
  if (budget == 0) return false;
  --budget;
  if (depth >= limits::kMaxNestingDepth) return true;
  if (node.IsSequence()) {
    for (const auto& item : node) {
      if (!WithinNodeBudget(item, budget, depth + 1)) return false;
    }
  } else if (node.IsMap()) {
    for (const auto& kv : node) {
      if (!WithinNodeBudget(kv.second, budget, depth + 1)) return false;
    }
  }
  return true;
}

/// Converts `node`; `nodes` counts the nodes produced so far. yaml-cpp shares an aliased node
/// between its uses, so the count (not the text's size) bounds what aliases expand to.
absl::Status YamlToJson(const YAML::Node& node, const std::string& path, int depth, json& out,
                        LineMap& lines, size_t& nodes) {
  // As limits::CheckNesting: at most kMaxNestingDepth containers inside each other.
  if ((node.IsMap() || node.IsSequence()) && depth >= limits::kMaxNestingDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.empty() ? "config" : path, ": nested deeper than ",
                     limits::kMaxNestingDepth, " levels"));
  }
  if (++nodes > limits::kMaxYamlNodes) return TooManyNodes();
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      out = nullptr;
      return absl::OkStatus();
    case YAML::NodeType::Scalar: {
      const std::string& tag = node.Tag();
      if (tag == "!" || tag == "tag:yaml.org,2002:str") {
        // Quoted or explicitly tagged: always a string.
        absl::StatusOr<std::string> text = DecodedScalar(node.Scalar(), path);
        if (!text.ok()) return text.status();
        out = std::move(*text);
      } else {
        out = ResolvePlainScalar(node.Scalar());
      }
      return absl::OkStatus();
    }
    case YAML::NodeType::Sequence: {
      out = json::array();
      size_t i = 0;
      for (const auto& item : node) {
        std::string item_path = Index(path, i++);
        if (!item.Mark().is_null()) lines[item_path] = item.Mark().line + 1;
        json value;
        if (auto st = YamlToJson(item, item_path, depth + 1, value, lines, nodes); !st.ok()) {
          return st;
        }
        out.push_back(std::move(value));
      }
      return absl::OkStatus();
    }
    case YAML::NodeType::Map: {
      out = json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          int line = kv.first.Mark().is_null() ? 0 : kv.first.Mark().line + 1;
          return absl::InvalidArgumentError(
              absl::StrCat(path.empty() ? "config" : path, ": mapping keys must be scalars",
                           line > 0 ? absl::StrCat(" (line ", line, ")") : ""));
        }
        absl::StatusOr<std::string> decoded = DecodedScalar(kv.first.Scalar(), path);
        if (!decoded.ok()) return decoded.status();
        std::string key = std::move(*decoded);
        std::string key_path = Join(path, key);
        if (!kv.first.Mark().is_null()) lines[key_path] = kv.first.Mark().line + 1;
        json value;
        if (auto st = YamlToJson(kv.second, key_path, depth + 1, value, lines, nodes); !st.ok()) {
          return st;
        }
        out[key] = std::move(value);
      }
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<json> YamlToJsonWithLines(const std::string& text, LineMap& lines) {
  json doc;
  if (text.size() > limits::kMaxDocumentBytes) {
    return absl::InvalidArgumentError(absl::StrCat("config is ", text.size(),
                                                   " bytes; the limit is ",
                                                   limits::kMaxDocumentBytes, " bytes"));
  }
  if (size_t bad = limits::UnacceptableYamlCharOffset(text); bad != std::string::npos) {
    size_t line = 1 + std::count(text.begin(), text.begin() + bad, '\n');
    size_t column = bad - (bad == 0 ? 0 : text.rfind('\n', bad - 1) + 1) + 1;
    return absl::InvalidArgumentError(
        absl::StrCat("invalid YAML at line ", line, ", column ", column,
                     ": unacceptable character (byte 0x",
                     absl::Hex(static_cast<unsigned char>(text[bad])),
                     "): not UTF-8, or a special character"));
  }
  try {
    YAML::Node root = YAML::Load(text);
    // Counted first (depth is bounded by yaml-cpp's parser), so that an alias bomb is refused
    // before its expansion is built; the conversion counts again as a backstop.
    size_t budget = limits::kMaxYamlNodes;
    if (!WithinNodeBudget(root, budget)) return TooManyNodes();
    size_t nodes = 0;
    if (auto st = YamlToJson(root, "", 0, doc, lines, nodes); !st.ok()) return st;
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return absl::InvalidArgumentError("invalid YAML: " + e.msg);
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML at line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
  return doc;
}

std::vector<std::string> OrderedKeys(const json& j, const std::vector<std::string>* key_order) {
  std::vector<std::string> keys;
  if (key_order != nullptr) {
    for (const auto& k : *key_order) {
      if (j.contains(k)) keys.push_back(k);
    }
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find(keys.begin(), keys.end(), it.key()) == keys.end()) keys.push_back(it.key());
  }
  return keys;
}

namespace {

// Characters that yaml-cpp writes unescaped even inside double quotes, and that a YAML reader
// refuses (DEL) or reads as line breaks (U+2028, U+2029): with their escapes. (It writes
// U+FFFE and U+FFFF as U+FFFD; the reader refuses them, escaped or not.)
constexpr std::pair<std::string_view, std::string_view> kRawInQuotes[] = {
    {"\x7f", "\\x7f"},
    {"\xe2\x80\xa8", "\\L"},
    {"\xe2\x80\xa9", "\\P"},
};

// Whether a string must be written double-quoted (and escaped): it holds C0 or C1 controls
// (a plain scalar would lose a trailing CR), NBSP, a BOM, or one of kRawInQuotes.
bool NeedsEscapes(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20) return true;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0xA0) return true;
  }
  if (s.find("\xef\xbb\xbf") != std::string_view::npos) return true;
  for (const auto& [raw, escaped] : kRawInQuotes) {
    if (s.find(raw) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

void EmitString(YAML::Emitter& out, const std::string& s) {
  // A string that would read back as another type (or empty), or that needs escapes, is
  // double-quoted.
  if (s.empty() || NeedsEscapes(s) || !ResolvePlainScalar(s).is_string()) {
    out << YAML::DoubleQuoted << s;
  } else {
    out << s;
  }
}

std::string EmitterText(const YAML::Emitter& out) {
  std::string text = out.c_str();
  // Every occurrence is inside a double-quoted scalar (EmitString quotes such strings).
  for (const auto& [raw, escaped] : kRawInQuotes) {
    for (size_t pos = text.find(raw); pos != std::string::npos;
         pos = text.find(raw, pos + escaped.size())) {
      text.replace(pos, raw.size(), escaped);
    }
  }
  return text;
}

namespace {

void EmitObject(YAML::Emitter& out, const json& j, const std::vector<std::string>* key_order) {
  if (j.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    return;
  }
  out << YAML::BeginMap;
  for (const auto& k : OrderedKeys(j, key_order)) {
    // YAML limits implicit keys to 1024 characters (as written, escapes included): a long key
    // is written as an explicit "? key" so that it reads back.
    if (k.size() > 128) out << YAML::LongKey;
    out << YAML::Key;
    EmitString(out, k);
    out << YAML::Value;
    EmitJson(out, j.at(k), nullptr);
  }
  out << YAML::EndMap;
}

}  // namespace

void EmitJson(YAML::Emitter& out, const json& j, const std::vector<std::string>* key_order) {
  switch (j.type()) {
    case json::value_t::null:
      out << YAML::Null;
      break;
    case json::value_t::boolean:
      out << j.get<bool>();
      break;
    case json::value_t::number_integer:
      out << j.get<int64_t>();
      break;
    case json::value_t::number_unsigned:
      out << j.get<uint64_t>();
      break;
    case json::value_t::number_float: {
      double d = j.get<double>();
      if (std::isnan(d)) {
        out << ".nan";
      } else if (std::isinf(d)) {
        out << (d > 0 ? ".inf" : "-.inf");
      } else {
        out << j.dump();  // shortest round-trip form, always with a '.' or exponent
      }
      break;
    }
    case json::value_t::string:
      EmitString(out, j.get<std::string>());
      break;
    case json::value_t::array:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
      } else {
        out << YAML::BeginSeq;
        for (const auto& item : j) EmitJson(out, item, key_order);
        out << YAML::EndSeq;
      }
      break;
    case json::value_t::object:
      EmitObject(out, j, key_order);
      break;
    default:
      out << YAML::Null;
      break;
  }
}

std::string EmitTopLevel(const std::string& key, const json& value,
                         const std::vector<std::string>* key_order) {
  YAML::Emitter out;
  out.SetNullFormat(YAML::LowerNull);
  out.SetBoolFormat(YAML::TrueFalseBool);
  out << YAML::Block << YAML::BeginMap << YAML::Key << key << YAML::Value;
  EmitJson(out, value, key_order);
  out << YAML::EndMap;
  return EmitterText(out);
}

}  // namespace serve::config::detail
