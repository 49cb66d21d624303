#pragma once

#include <string>

namespace serve::replica {

/// "<demangled type>: <what()>" of the exception being handled (call inside a catch block).
std::string CurrentExceptionText();

/// dlopen(RTLD_NOW | RTLD_GLOBAL) of the app library; false with `*error` set when it fails.
bool LoadLibrary(const std::string& path, std::string* error);

}  // namespace serve::replica
