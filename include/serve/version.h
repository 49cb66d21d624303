#pragma once

#define SERVE_SDK_VERSION_MAJOR 0
#define SERVE_SDK_VERSION_MINOR 1
#define SERVE_SDK_VERSION_PATCH 0

#if defined(__GNUC__)
#define SERVE_EXPORT __attribute__((visibility("default")))
#else
#define SERVE_EXPORT
#endif
