#include "common/safetensors.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace mkd {
namespace {

using Json = nlohmann::json;

absl::Status Invalid(absl::string_view a, absl::string_view b = "", absl::string_view c = "") {
  return absl::InvalidArgumentError(absl::StrCat("safetensors: ", a, b, c));
}

uint64_t ReadLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void AppendLe64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

struct Span {
  std::string name;
  uint64_t begin;
  uint64_t end;
};

// Parses one tensor entry of the header into `array` (without data) and
// its byte span.
absl::Status ParseEntry(const std::string& name, const Json& entry, HostArray* array, Span* span) {
  if (!entry.is_object()) return Invalid("entry '", name, "' is not an object");
  for (const auto& [key, unused] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return Invalid("entry '", name, absl::StrCat("' has unknown field '", key, "'"));
    }
  }
  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return Invalid("entry '", name, "' lacks a string 'dtype'");
  }
  auto dtype = ParseDTypeName(dtype_it->get<std::string>());
  if (!dtype.ok()) return Invalid("entry '", name, absl::StrCat("': ", dtype.status().message()));
  array->dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) {
    return Invalid("entry '", name, "' lacks an array 'shape'");
  }
  array->shape.clear();
  for (const auto& d : *shape_it) {
    if (!d.is_number_unsigned()) {
      return Invalid("entry '", name, "' has a shape entry that is not a non-negative integer");
    }
    array->shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2 ||
      !(*off_it)[0].is_number_unsigned() || !(*off_it)[1].is_number_unsigned()) {
    return Invalid("entry '", name, "' lacks 'data_offsets' [begin, end]");
  }
  span->name = name;
  span->begin = (*off_it)[0].get<uint64_t>();
  span->end = (*off_it)[1].get<uint64_t>();
  if (span->end < span->begin) {
    return Invalid("entry '", name, "' has data_offsets end < begin");
  }
  auto count = NumElements(array->shape);
  if (!count.ok()) return Invalid("entry '", name, absl::StrCat("': ", count.status().message()));
  uint64_t expected = static_cast<uint64_t>(*count) * DTypeSize(array->dtype);
  if (span->end - span->begin != expected) {
    return Invalid(
        "entry '", name,
        absl::StrCat("' spans ", span->end - span->begin, " bytes but ", DTypeName(array->dtype),
                     " ", ShapeString(array->shape), " needs ", expected));
  }
  return absl::OkStatus();
}

absl::Status ParseMetadata(const Json& meta, SafetensorsFile* file) {
  if (!meta.is_object()) return Invalid("'__metadata__' is not an object");
  for (const auto& [key, value] : meta.items()) {
    if (!value.is_string()) {
      return Invalid("'__metadata__' value for '", key, "' is not a string");
    }
    file->metadata[key] = value.get<std::string>();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes) {
  if (bytes.size() < 8) return Invalid("file is shorter than the 8-byte header length");
  uint64_t header_len = ReadLe64(bytes.data());
  if (header_len > kSafetensorsMaxHeaderBytes) {
    return Invalid(absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                kSafetensorsMaxHeaderBytes));
  }
  if (header_len > bytes.size() - 8) {
    return Invalid(absl::StrCat("header length ", header_len, " runs past the end of the ",
                                bytes.size(), "-byte file (truncated?)"));
  }
  absl::string_view header = bytes.substr(8, header_len);
  if (header.empty() || header.front() != '{') return Invalid("header does not start with '{'");
  Json json = Json::parse(header.begin(), header.end(), /*cb=*/nullptr,
                          /*allow_exceptions=*/false);
  if (json.is_discarded()) return Invalid("header is not valid JSON");
  if (!json.is_object()) return Invalid("header is not a JSON object");

  SafetensorsFile file;
  std::vector<Span> spans;
  for (const auto& [name, entry] : json.items()) {
    if (name == "__metadata__") {
      MKD_RETURN_IF_ERROR(ParseMetadata(entry, &file));
      continue;
    }
    if (name.empty()) return Invalid("a tensor has an empty name");
    HostArray array;
    Span span;
    MKD_RETURN_IF_ERROR(ParseEntry(name, entry, &array, &span));
    spans.push_back(span);
    file.tensors.emplace(name, std::move(array));
  }

  // The buffer must be tiled exactly: sorted spans start at 0, abut, and end
  // at the last byte of the file.
  absl::string_view buffer = bytes.substr(8 + header_len);
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const Span& span : spans) {
    if (span.begin != cursor) {
      return Invalid("tensor '", span.name,
                     absl::StrCat(span.begin > cursor ? "' leaves a hole" : "' overlaps another",
                                  " in the data buffer at offset ", cursor));
    }
    if (span.end > buffer.size()) {
      return Invalid("tensor '", span.name,
                     absl::StrCat("' ends at ", span.end, " past the ", buffer.size(),
                                  "-byte data buffer (truncated?)"));
    }
    cursor = span.end;
    file.tensors[span.name].data.assign(buffer.data() + span.begin, span.end - span.begin);
  }
  if (cursor != buffer.size()) {
    return Invalid(absl::StrCat(buffer.size() - cursor, " trailing bytes after the last tensor"));
  }
  return file;
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  MKD_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  auto file = ParseSafetensors(bytes);
  if (!file.ok()) return Annotate(file.status(), path);
  return file;
}

absl::StatusOr<std::string> SerializeSafetensors(const SafetensorsFile& file) {
  Json header = Json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t offset = 0;
  for (const auto& [name, array] : file.tensors) {
    if (name.empty() || name == "__metadata__") {
      return Invalid("cannot write a tensor named '", name, "'");
    }
    MKD_ASSIGN_OR_RETURN(int64_t count, NumElements(array.shape));
    uint64_t bytes = static_cast<uint64_t>(count) * DTypeSize(array.dtype);
    if (bytes != array.data.size()) {
      return Invalid("tensor '", name,
                     absl::StrCat("' holds ", array.data.size(), " bytes but ",
                                  ShapeString(array.shape), " needs ", bytes));
    }
    header[name] = {{"dtype", std::string(DTypeName(array.dtype))},
                    {"shape", array.shape},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  AppendLe64(&out, text.size());
  out += text;
  for (const auto& [name, array] : file.tensors) out += array.data;
  return out;
}

absl::Status WriteSafetensors(const std::string& path, const SafetensorsFile& file) {
  MKD_ASSIGN_OR_RETURN(std::string bytes, SerializeSafetensors(file));
  return WriteFileAtomic(path, bytes);
}

}  // namespace mkd
