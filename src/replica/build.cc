#include <cxxabi.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeinfo>

#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "config/import_path.h"
#include "replica/loader.h"
#include "replica/replica.h"
#include "rpc/grpc_util.h"
#include "sdk/host.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::replica {
namespace {

// The current exception as "<class with namespaces>: <what()>", e.g.
// "std::invalid_argument: stoi".
std::string DescribeCurrentException() {
  std::string type = "unknown exception";
  std::string what;
  try {
    throw;
  } catch (const std::exception& e) {
    type = typeid(e).name();
    what = e.what();
  } catch (...) {
    if (const std::type_info* t = abi::__cxa_current_exception_type()) type = t->name();
  }
  int status = 0;
  if (char* demangled = abi::__cxa_demangle(type.c_str(), nullptr, nullptr, &status)) {
    if (status == 0) type = demangled;
    std::free(demangled);
  }
  for (const std::string inline_ns : {"__cxx11::", "__1::"}) {
    for (size_t pos; (pos = type.find(inline_ns)) != std::string::npos;) {
      type.erase(pos, inline_ns.size());
    }
  }
  return what.empty() ? type : type + ": " + what;
}

// Builds the graph of `options.import_path`, or returns false with `*error` set: import
// failures as their own message, a throwing builder as "Application builder '<import path>'
// raised <type>: <what>".
bool BuildGraph(const BuildOptions& options, Json* graph, std::string* error) {
  auto import_path = config::ParseImportPath(options.import_path);
  if (!import_path.ok()) {
    *error = std::string(import_path.status().message());
    return false;
  }
  auto library = config::ResolveLibrary(import_path->module, options.app_dir);
  if (!library.ok()) {
    *error = std::string(library.status().message());
    return false;
  }
  if (!options.app_dir.empty()) (void)::chdir(options.app_dir.c_str());
  if (!LoadLibrary(*library, error)) return false;
  std::map<std::string, std::string> args;
  Json args_json = Json::parse(options.args_json.empty() ? "{}" : options.args_json, nullptr,
                               /*allow_exceptions=*/false);
  if (!args_json.is_object()) {
    *error = "the application arguments are not a JSON object: " + options.args_json;
    return false;
  }
  for (auto& [k, v] : args_json.items()) args[k] = v.is_string() ? v.get<std::string>() : v.dump();
  const sdk::AppEntry* entry = sdk::FindApp(import_path->attr);
  if (entry == nullptr) {
    std::string known;
    for (auto& n : sdk::AppNames()) known += (known.empty() ? "" : ", ") + n;
    *error = "Failed to import '" + options.import_path + "': no application named '" +
             import_path->attr + "' is registered in " + *library +
             " (registered: " + (known.empty() ? "none" : known) + ")";
    return false;
  }
  if (!entry->takes_args && !args.empty()) {
    *error = "Arguments can only be passed to an application builder function "
             "(SERVE_APP_BUILDER), not to an application ('" + options.import_path + "')";
    return false;
  }
  try {
    *graph = sdk::BuildApplication(import_path->attr, Args(std::move(args)));
  } catch (...) {
    *error = std::string(entry->takes_args ? "Application builder '" : "Application '") +
             options.import_path + "' raised " + DescribeCurrentException();
    return false;
  }
  (*graph)["library_path"] = *library;
  return true;
}

// Reports `result` to the controller, retrying (for up to 60 s) while it is unreachable, e.g.
// restarting; false when it never answered.
bool ReportResult(const std::string& controller_address, const v1::BuildResult& result) {
  auto stub = v1::Controller::NewStub(rpc::ChannelTo(controller_address));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  grpc::Status st;
  while (true) {
    auto ctx = rpc::ContextWithDeadline(10);
    ctx->set_wait_for_ready(true);
    v1::Empty empty;
    st = stub->ReportBuildResult(ctx.get(), result, &empty);
    if (st.ok()) return true;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  spdlog::error("Cannot report the build result to the controller at {}: {}", controller_address,
                st.error_message());
  return false;
}

}  // namespace

int RunBuild(const BuildOptions& options) {
  if (!options.log_file.empty()) {
    InitProcessLogging({"build", options.build_id}, options.log_file);
  }
  v1::BuildResult result;
  result.set_build_id(options.build_id);
  Json graph;
  std::string error;
  bool ok = false;
  try {
    ok = BuildGraph(options, &graph, &error);
  } catch (...) {
    error = "Building '" + options.import_path + "' failed: " + DescribeCurrentException();
  }
  if (ok) {
    result.set_ok(true);
    result.set_graph_msgpack(detail::EncodeMsgpack(graph));
  } else {
    result.set_ok(false);
    result.set_error(error);
  }
  if (options.print) {  // `serve build`: the graph on stdout, an error on stderr
    if (!ok) {
      std::fprintf(stderr, "%s\n", error.c_str());
      return 1;
    }
    for (auto& node : graph["deployments"]) node.erase("init_args");
    std::printf("%s\n", graph.dump().c_str());
    return 0;
  }
  if (!ok) spdlog::error("{}", error);
  bool reported = ReportResult(options.controller_address, result);
  ShutdownLogging();
  if (!reported) return 2;
  return ok ? 0 : 1;
}

}  // namespace serve::replica
