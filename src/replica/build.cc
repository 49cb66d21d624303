#include <unistd.h>

#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>

#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "config/import_path.h"
#include "replica/loader.h"
#include "replica/replica.h"
#include "rpc/grpc_util.h"
#include "sdk/host.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::replica {

int RunBuild(const BuildOptions& options) {
  if (!options.log_file.empty()) InitProcessLogging(options.log_file);
  v1::BuildResult result;
  result.set_build_id(options.build_id);
  try {
    auto import_path = config::ParseImportPath(options.import_path);
    if (!import_path.ok()) throw std::invalid_argument(std::string(import_path.status().message()));
    auto library = config::ResolveLibrary(import_path->module, options.app_dir);
    if (!library.ok()) throw std::invalid_argument(std::string(library.status().message()));
    std::string error;
    if (!options.app_dir.empty()) (void)::chdir(options.app_dir.c_str());
    if (!LoadLibrary(*library, &error)) throw std::invalid_argument(error);
    std::map<std::string, std::string> args;
    Json args_json = Json::parse(options.args_json.empty() ? "{}" : options.args_json);
    for (auto& [k, v] : args_json.items()) args[k] = v.is_string() ? v.get<std::string>() : v.dump();
    Json graph = sdk::BuildApplication(import_path->attr, Args(std::move(args)));
    graph["library_path"] = *library;
    result.set_ok(true);
    result.set_graph_msgpack(detail::EncodeMsgpack(graph));
  } catch (...) {
    result.set_ok(false);
    result.set_error(CurrentExceptionText());
    spdlog::error("Building '{}' failed: {}", options.import_path, result.error());
  }
  if (options.print) {
    if (!result.ok()) {
      std::fprintf(stderr, "%s\n", result.error().c_str());
      return 1;
    }
    Json graph = detail::DecodeMsgpack(result.graph_msgpack());
    for (auto& node : graph["deployments"]) node.erase("init_args");
    std::printf("%s\n", graph.dump().c_str());
    return 0;
  }
  auto stub = v1::Controller::NewStub(rpc::ChannelTo(options.controller_address));
  auto ctx = rpc::ContextWithDeadline(10);
  v1::Empty empty;
  grpc::Status st = stub->ReportBuildResult(ctx.get(), result, &empty);
  if (!st.ok()) {
    std::fprintf(stderr, "cannot report the build result: %s\n", st.error_message().c_str());
    return 1;
  }
  return result.ok() ? 0 : 1;
}

}  // namespace serve::replica
