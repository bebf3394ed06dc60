#include "common/npy.h"

#include <cctype>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace mkd {
namespace {

constexpr absl::string_view kMagic = "\x93NUMPY";

absl::Status Invalid(absl::string_view a, absl::string_view b = "") {
  return absl::InvalidArgumentError(absl::StrCat("npy: ", a, b));
}

struct DescrEntry {
  absl::string_view descr;  // Without the byte-order character.
  DType dtype;
};

constexpr DescrEntry kDescrs[] = {
    {"f8", DType::kF64}, {"f4", DType::kF32}, {"f2", DType::kF16},
    {"i8", DType::kI64}, {"i4", DType::kI32}, {"i2", DType::kI16},
    {"i1", DType::kI8},  {"u1", DType::kU8},  {"b1", DType::kBool},
};

absl::StatusOr<DType> ParseDescr(absl::string_view descr) {
  if (descr.size() < 2) return Invalid("bad descr '", descr);
  char order = descr[0];
  absl::string_view body = descr.substr(1);
  for (const auto& e : kDescrs) {
    if (e.descr != body) continue;
    bool single_byte = DTypeSize(e.dtype) == 1;
    if (order == '<' || order == '|' || order == '=' || (order == '>' && single_byte)) {
      return e.dtype;
    }
    return Invalid("big-endian data is not supported: descr '", descr);
  }
  return Invalid("unsupported dtype descr '", absl::StrCat(descr, "'"));
}

// Extracts the value text after `'key':` in the header dict, up to the
// next top-level comma or closing brace.
absl::StatusOr<absl::string_view> DictValue(absl::string_view dict, absl::string_view key) {
  std::string quoted = absl::StrCat("'", key, "'");
  size_t pos = dict.find(quoted);
  if (pos == absl::string_view::npos) return Invalid("header lacks '", absl::StrCat(key, "'"));
  pos = dict.find(':', pos + quoted.size());
  if (pos == absl::string_view::npos) return Invalid("header has no value for '", key);
  size_t start = pos + 1;
  int depth = 0;
  size_t i = start;
  for (; i < dict.size(); ++i) {
    char c = dict[i];
    if (c == '(' || c == '[') ++depth;
    if (c == ')' || c == ']') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  return absl::StripAsciiWhitespace(dict.substr(start, i - start));
}

absl::StatusOr<std::vector<int64_t>> ParseShape(absl::string_view text) {
  if (text.size() < 2 || text.front() != '(' || text.back() != ')') {
    return Invalid("shape is not a tuple: ", text);
  }
  std::vector<int64_t> shape;
  for (absl::string_view part : absl::StrSplit(text.substr(1, text.size() - 2), ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) continue;  // "(3,)" and "()".
    int64_t d;
    if (!absl::SimpleAtoi(part, &d) || d < 0) return Invalid("bad shape entry in ", text);
    shape.push_back(d);
  }
  return shape;
}

absl::string_view DescrFor(DType dtype) {
  switch (dtype) {
    case DType::kF64:
      return "<f8";
    case DType::kF32:
      return "<f4";
    case DType::kF16:
      return "<f2";
    case DType::kI64:
      return "<i8";
    case DType::kI32:
      return "<i4";
    case DType::kI16:
      return "<i2";
    case DType::kI8:
      return "|i1";
    case DType::kU8:
      return "|u1";
    case DType::kBool:
      return "|b1";
    case DType::kBF16:
      return "";
  }
  return "";
}

}  // namespace

absl::StatusOr<HostArray> ParseNpy(absl::string_view bytes) {
  if (bytes.size() < 10 || bytes.substr(0, 6) != kMagic) {
    return Invalid("missing the \\x93NUMPY magic (not a .npy file?)");
  }
  int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len;
  size_t prefix;
  auto byte = [&](size_t i) { return static_cast<size_t>(static_cast<unsigned char>(bytes[i])); };
  if (major == 1) {
    header_len = byte(8) | (byte(9) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return Invalid("truncated header");
    header_len = byte(8) | (byte(9) << 8) | (byte(10) << 16) | (byte(11) << 24);
    prefix = 12;
  } else {
    return Invalid(absl::StrCat("unsupported format version ", major));
  }
  if (header_len > bytes.size() - prefix) return Invalid("header runs past the end of the file");
  absl::string_view dict = absl::StripAsciiWhitespace(bytes.substr(prefix, header_len));
  if (dict.empty() || dict.front() != '{' || dict.back() != '}') {
    return Invalid("header is not a dict");
  }
  MKD_ASSIGN_OR_RETURN(absl::string_view descr_text, DictValue(dict, "descr"));
  MKD_ASSIGN_OR_RETURN(absl::string_view order_text, DictValue(dict, "fortran_order"));
  MKD_ASSIGN_OR_RETURN(absl::string_view shape_text, DictValue(dict, "shape"));
  if (descr_text.size() < 2 || descr_text.front() != '\'' || descr_text.back() != '\'') {
    return Invalid("descr is not a simple string: ", descr_text);
  }
  HostArray array;
  MKD_ASSIGN_OR_RETURN(array.dtype, ParseDescr(descr_text.substr(1, descr_text.size() - 2)));
  if (order_text == "True") return Invalid("Fortran-order arrays are not supported");
  if (order_text != "False") return Invalid("bad fortran_order value ", order_text);
  MKD_ASSIGN_OR_RETURN(array.shape, ParseShape(shape_text));
  MKD_ASSIGN_OR_RETURN(int64_t count, NumElements(array.shape));
  size_t expected = static_cast<size_t>(count) * DTypeSize(array.dtype);
  absl::string_view data = bytes.substr(prefix + header_len);
  if (data.size() != expected) {
    return Invalid(absl::StrCat("data is ", data.size(), " bytes but shape ",
                                ShapeString(array.shape), " needs ", expected,
                                data.size() < expected ? " (truncated?)" : ""));
  }
  array.data.assign(data.data(), data.size());
  return array;
}

absl::StatusOr<HostArray> ReadNpy(const std::string& path) {
  MKD_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  auto array = ParseNpy(bytes);
  if (!array.ok()) return Annotate(array.status(), path);
  return array;
}

absl::StatusOr<std::string> SerializeNpy(const HostArray& array) {
  absl::string_view descr = DescrFor(array.dtype);
  if (descr.empty()) return Invalid("NumPy has no dtype for ", DTypeName(array.dtype));
  MKD_ASSIGN_OR_RETURN(int64_t count, NumElements(array.shape));
  if (static_cast<size_t>(count) * DTypeSize(array.dtype) != array.data.size()) {
    return Invalid("data size does not match shape ", ShapeString(array.shape));
  }
  std::string shape =
      absl::StrCat("(", absl::StrJoin(array.shape, ", "), array.shape.size() == 1 ? ",)" : ")");
  std::string dict =
      absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': ", shape, ", }");
  // Pad with spaces and a newline so magic + length + header is a multiple
  // of 64 bytes, as NumPy does.
  bool v2 = dict.size() + 11 > 65535;
  size_t prefix = v2 ? 12 : 10;
  size_t total = prefix + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  std::string out(kMagic);
  out.push_back(static_cast<char>(v2 ? 2 : 1));
  out.push_back(0);
  size_t len = dict.size();
  for (size_t i = 0; i < (v2 ? 4u : 2u); ++i)
    out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  out += dict;
  out += array.data;
  return out;
}

absl::Status WriteNpy(const std::string& path, const HostArray& array) {
  MKD_ASSIGN_OR_RETURN(std::string bytes, SerializeNpy(array));
  return WriteFileAtomic(path, bytes);
}

}  // namespace mkd
