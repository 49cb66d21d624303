#pragma once

// Shared between the SDK's own sources (sdk.cc, handles.cc); not part of include/serve nor of
// the host view (host.h).

#include <atomic>

#include "sdk/host.h"

namespace serve {

/// The request context installed on this thread (sdk::ScopedRequestContext), or nullptr.
/// Hidden: not exported from libserve.so (sdk::CurrentRequestContext() is).
extern thread_local const sdk::RequestContext* tls_request_context
    __attribute__((visibility("hidden")));

namespace detail {
/// The HandleRuntime installed by sdk::SetHandleRuntime (defined in handles.cc).
std::atomic<sdk::HandleRuntime*>& RuntimeSlot();
}  // namespace detail

}  // namespace serve
