#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace serve {

/// Random id of `n` characters from [a-z0-9] (replica ids, request ids).
std::string RandomId(size_t n);
/// Random UUID v4 text (X-Request-ID).
std::string RandomUuid();

/// Reads a whole file; nullopt when it cannot be read.
std::optional<std::string> ReadFile(const std::string& path);
/// Writes `contents` to `path` atomically (temp file + rename). Returns false on failure.
bool WriteFileAtomic(const std::string& path, const std::string& contents);
/// WriteFileAtomic for secrets: the file is created 0600 (readable by its owner only) before
/// anything is written to it.
bool WritePrivateFileAtomic(const std::string& path, const std::string& contents);

/// Directory holding the running executable (serve binaries find each other through it).
std::string SelfExeDir();
/// Path of sibling binary `name` ($SERVE_BIN_DIR overrides the executable's directory).
std::string SiblingBinary(const std::string& name);

/// Environment variable as a number, `fallback` when unset or unparsable.
double EnvDouble(const char* name, double fallback);
std::string EnvString(const char* name, const std::string& fallback);

/// Seconds since the Unix epoch.
double NowUnixSeconds();

/// First non-loopback-independent local address used for node_ip ("127.0.0.1" here).
std::string LocalNodeIp();

}  // namespace serve
