#include "replica/loader.h"

#include <dlfcn.h>

#include <exception>
#include <typeinfo>

#include "sdk/host.h"

namespace serve::replica {

std::string CurrentExceptionText() {
  try {
    throw;
  } catch (const std::exception& e) {
    return detail::Demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    return "unknown exception";
  }
}

// dlopen with a clear error.
bool LoadLibrary(const std::string& path, std::string* error) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (handle == nullptr) {
    const char* e = ::dlerror();
    *error = "Failed to load '" + path + "': " + (e ? e : "unknown error");
    return false;
  }
  return true;
}

}  // namespace serve::replica
