#include "cli/cli.h"

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/cli_internal.h"
#include "common/util.h"
#include "config/schema.h"
#include "launch/cluster.h"
#include "node/resources.h"
#include "rpc/auth.h"

namespace serve::cli {
namespace {

using detail::CmdBuild;
using detail::CmdConfig;
using detail::CmdDeploy;
using detail::CmdRun;
using detail::CmdShutdown;
using detail::CmdDrainNode;
using detail::CmdStart;
using detail::CmdStartWorker;
using detail::CmdStatus;
using detail::CmdStop;
using detail::Fail;
using detail::RunArgs;
using launch::ClusterOptions;
using launch::DashboardAddress;
using launch::TempRoot;

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"serve: run and manage serve applications"};
  app.require_subcommand(1);
  std::string temp_dir, address, token_file;
  auto add_temp = [&](CLI::App* cmd) {
    cmd->add_option("--temp-dir", temp_dir,
                    "root of session directories (default $SERVE_TEMP_DIR, else /tmp/serve)");
    cmd->add_option("--token-file", token_file,
                    "file holding the cluster token (default $SERVE_CLUSTER_TOKEN_FILE, "
                    "$SERVE_CLUSTER_TOKEN, else the latest local session's cluster_token; "
                    "a new head makes a new token unless one is given)");
  };
  auto add_address = [&](CLI::App* cmd) {
    cmd->add_option("-a,--address", address,
                    "REST API address (default $SERVE_DASHBOARD_ADDRESS, "
                    "$RAY_DASHBOARD_ADDRESS, the local instance, http://localhost:8265)");
    add_temp(cmd);
  };
  auto add_http = [&](CLI::App* cmd, ClusterOptions& c) {
    c.http_host = EnvString("SERVE_HTTP_HOST", c.http_host);
    c.http_port = static_cast<int>(EnvDouble("SERVE_HTTP_PORT", c.http_port));
    c.dashboard_host = EnvString("SERVE_DASHBOARD_HOST", c.dashboard_host);
    c.dashboard_port = static_cast<int>(EnvDouble("SERVE_DASHBOARD_PORT", c.dashboard_port));
    cmd->add_option("--http-host", c.http_host, "HTTP host of the proxy ($SERVE_HTTP_HOST)");
    cmd->add_option("--http-port", c.http_port,
                    "HTTP port of the proxy (0: any free port; $SERVE_HTTP_PORT)");
    cmd->add_option("--dashboard-host", c.dashboard_host,
                    "host of the REST API ($SERVE_DASHBOARD_HOST)");
    cmd->add_option("--dashboard-port", c.dashboard_port,
                    "port of the REST API (0: any; $SERVE_DASHBOARD_PORT)");
    c.metrics_export_port =
        static_cast<int>(EnvDouble("SERVE_METRICS_EXPORT_PORT", c.metrics_export_port));
    cmd->add_option("--metrics-export-port", c.metrics_export_port,
                    "port of the node's Prometheus endpoint (0: any free port; default 8080, or "
                    "a free port when taken; $SERVE_METRICS_EXPORT_PORT)")
        ->check(CLI::Range(0, 65535));
  };

  // Node resources, checked here (a clear error before anything starts) and passed on to the
  // node agent, which resolves the unset ones from the machine.
  node::ResourceOverrides node_resources;
  auto add_node = [&](CLI::App* cmd) {
    cmd->add_option("--num-cpus", node_resources.num_cpus, "CPUs this node offers (default: detected)");
    cmd->add_option("--num-gpus", node_resources.num_gpus,
                    "GPUs this node offers (default: counted through the CUDA runtime)");
    cmd->add_option("--memory", node_resources.memory_bytes,
                    "memory this node offers, in bytes (default: available memory)");
    cmd->add_option("--resources", node_resources.resources_json,
                    R"(custom resources, a JSON object, e.g. '{"TPU": 4}')");
  };
  auto node_args = [&]() -> absl::StatusOr<std::vector<std::string>> {
    try {
      node::ResolveNodeResources(node_resources, node::SystemProbe());
    } catch (const std::invalid_argument& e) {
      return absl::InvalidArgumentError(e.what());
    }
    std::vector<std::string> args;
    auto number = [&](const char* flag, const std::optional<double>& v) {
      if (v) args.insert(args.end(), {flag, nlohmann::json(*v).dump()});
    };
    number("--num-cpus", node_resources.num_cpus);
    number("--num-gpus", node_resources.num_gpus);
    number("--memory", node_resources.memory_bytes);
    if (!node_resources.resources_json.empty()) {
      args.insert(args.end(), {"--resources", node_resources.resources_json});
    }
    return args;
  };

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "Run an application or config file; block until Ctrl-C.");
  run_cmd->add_option("config_or_import_path", run.target, "config.yaml or module:app")->required();
  run_cmd->add_option("args", run.kv, "key=value builder arguments");
  run_cmd->add_option("-d,--app-dir", run.app_dir, "directory searched for lib<module>.so");
  run_cmd->add_option("--name", run.name, "application name (import paths only)");
  run_cmd->add_option("--route-prefix", run.route_prefix, "HTTP route prefix (import paths only)");
  bool strict = config::StrictConfigFromEnv();
  auto add_strict = [&](CLI::App* cmd) {
    cmd->add_flag("--strict", strict,
                  "reject unknown config fields instead of warning ($SERVE_STRICT_CONFIG=1)");
  };
  add_strict(run_cmd);
  add_http(run_cmd, run.cluster);
  add_node(run_cmd);
  add_temp(run_cmd);
  run_cmd->add_option("-a,--address", run.address,
                      "deploy onto the instance with this REST API (default: the one "
                      "$SERVE_DASHBOARD_ADDRESS, $RAY_DASHBOARD_ADDRESS or the latest live "
                      "local session names, when it answers; else start a local instance)");
  run_cmd->add_flag("--non-blocking", run.non_blocking,
                    "return once the application(s) are RUNNING (a started instance keeps "
                    "running; stop it with `serve stop`)");
  std::string runtime_env_file, runtime_env_json, working_dir;
  auto add_runtime_env = [&](CLI::App* cmd) {
    cmd->add_option("--runtime-env", runtime_env_file, "runtime_env from a YAML or JSON file");
    cmd->add_option("--runtime-env-json", runtime_env_json, "runtime_env as inline JSON");
    cmd->add_option("--working-dir", working_dir,
                    "runtime_env.working_dir: a directory (or .zip) copied for the replicas, "
                    "also searched for lib<module>.so");
  };
  add_runtime_env(run_cmd);
  run_cmd->add_flag("-r,--reload", run.reload,
                    "watch the sources, rebuild with --reload-command and redeploy on change");
  run_cmd->add_option("--reload-command", run.reload_command,
                      "build command for --reload (default: cmake --build <app-dir>)");
  run_cmd->add_option("--reload-dir", run.reload_dir,
                      "sources watched by --reload (default: the CMake source directory of "
                      "<app-dir>, else <app-dir>)");

  ClusterOptions start;
  std::string start_app_dir = ".";
  bool head = false;
  std::string join_address;
  auto* start_cmd = app.add_subcommand("start", "Start a long-lived serve instance (detached).");
  auto* head_opt = start_cmd->add_flag("--head", head, "start the head node (the default)");
  start_cmd->add_option("--address", join_address,
                        "start a worker node that joins the cluster whose head controller "
                        "listens on HOST:PORT (printed by `serve start` on the head)")
      ->excludes(head_opt);
  std::string labels;
  start_cmd->add_option("--labels", labels,
                        R"(labels of this node, a JSON object of strings, e.g. '{"zone": "a"}')");
  start_cmd->add_option("--node-ip", start.node_ip,
                        "IP this node binds and advertises (default $SERVE_NODE_IP, else "
                        "127.0.0.1)");
  add_http(start_cmd, start);
  add_node(start_cmd);
  start_cmd->add_option("--proxy-location", start.proxy_location)
      ->check(CLI::IsMember({"EveryNode", "HeadOnly", "Disabled"}));
  std::string http_location;
  auto* http_location_opt =
      start_cmd->add_option("--http-location", http_location,
                            "deprecated form of --proxy-location (NoServer = Disabled); "
                            "overrides it when given")
          ->check(CLI::IsMember({"HeadOnly", "EveryNode", "NoServer"}));
  start_cmd->add_option("--grpc-port", start.grpc_port);
  start_cmd->add_option("--grpc-servicer-functions", start.grpc_servicer_functions,
                        "fully-qualified gRPC service names the proxies serve (repeatable)");
  start_cmd->add_option("-d,--app-dir", start_app_dir, "where applications' libraries are found");
  std::string start_session;
  start.redis_address = EnvString("SERVE_REDIS_ADDRESS", "");
  start_cmd->add_option("--redis-address", start.redis_address,
                        "HOST:PORT[/db]: keep the state in Redis (default $SERVE_REDIS_ADDRESS)");
  start_cmd->add_option("--redis-password", start.redis_password);
  start_cmd->add_option("--cluster-name", start.cluster_name, "key namespace in Redis");
  start_cmd->add_option("--controller-port", start.controller_port,
                        "gRPC port of the head's controller, which worker nodes join (default: "
                        "any free port; fix it so that a new head on the same Redis takes the "
                        "workers back)")
      ->check(CLI::Range(0, 65535));
  start_cmd->add_option("--session-dir", start_session,
                        "reuse this session directory (its file state store included)");
  add_temp(start_cmd);

  auto* stop_cmd = app.add_subcommand("stop", "Stop the serve instance and all its processes.");
  add_temp(stop_cmd);

  std::string deploy_target, deploy_name = "default", deploy_prefix = "/";
  std::vector<std::string> deploy_kv;
  auto* deploy_cmd = app.add_subcommand("deploy", "Deploy a config file or import path (async).");
  deploy_cmd->add_option("config_or_import_path", deploy_target)->required();
  deploy_cmd->add_option("args", deploy_kv, "key=value builder arguments");
  deploy_cmd->add_option("--name", deploy_name);
  deploy_cmd->add_option("--route-prefix", deploy_prefix);
  std::string deploy_app_dir;
  deploy_cmd->add_option("-d,--app-dir", deploy_app_dir,
                         "also look for lib<module>.so here (a directory on the instance's "
                         "machine; sent as runtime_env.env_vars.SERVE_APP_PATH)");
  add_strict(deploy_cmd);
  add_address(deploy_cmd);
  add_runtime_env(deploy_cmd);

  std::string name;
  auto* config_cmd = app.add_subcommand("config", "Print the deployed config(s).");
  config_cmd->add_option("-n,--name", name, "only this application");
  add_address(config_cmd);

  auto* status_cmd = app.add_subcommand("status", "Print the status of the applications.");
  status_cmd->add_option("-n,--name", name, "only this application");
  add_address(status_cmd);

  bool yes = false;
  auto* shutdown_cmd = app.add_subcommand("shutdown", "Delete every application.");
  shutdown_cmd->add_flag("-y,--yes", yes, "do not ask for confirmation");
  add_address(shutdown_cmd);

  std::string drain_node_id;
  double drain_deadline_s = 0;
  auto* drain_cmd = app.add_subcommand(
      "drain-node", "Drain a worker node: its replicas move to other nodes, then it stops.");
  drain_cmd->add_option("node_id", drain_node_id, "the node's id (see `serve status`)")
      ->required();
  drain_cmd->add_option("--deadline-s", drain_deadline_s,
                        "stop its replicas by then even when no replacement runs (default: wait "
                        "for replacements)")
      ->check(CLI::Range(0.0, 1e7));
  add_address(drain_cmd);

  std::vector<std::string> build_targets;
  std::string build_app_dir = ".", build_output;
  auto* build_cmd = app.add_subcommand("build", "Print a config file for import paths.");
  build_cmd->add_option("import_paths", build_targets)->required();
  build_cmd->add_option("-d,--app-dir", build_app_dir);
  build_cmd->add_option("-o,--output-path", build_output);
  std::vector<std::string> build_grpc_services;
  build_cmd->add_option("--grpc-servicer-functions", build_grpc_services,
                        "grpc_options.grpc_servicer_functions of the config (repeatable)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::string root = TempRoot(temp_dir);
  // The cluster token (docs/security.md): one given explicitly (flag or environment) is the
  // token of a head started here and what a worker joins with; other commands fall back to
  // the latest local session's.
  auto explicit_token = launch::FindClusterToken(token_file, "");
  if (!explicit_token.ok()) return Fail(std::string(explicit_token.status().message()));
  if (*start_cmd && !join_address.empty() && !*explicit_token) {
    return Fail("joining a cluster needs its token: give a copy of the head's "
                "<session>/cluster_token with --token-file (or set $SERVE_CLUSTER_TOKEN_FILE "
                "or $SERVE_CLUSTER_TOKEN).");
  }
  if (*explicit_token) run.cluster.token = start.token = **explicit_token;
  if (*run_cmd || *deploy_cmd || *config_cmd || *status_cmd || *shutdown_cmd) {
    auto token = launch::FindClusterToken(token_file, root);
    if (!token.ok()) return Fail(std::string(token.status().message()));
    if (*token) rpc::SetClusterToken(**token);
  }
  if (*run_cmd || *start_cmd) {
    auto args = node_args();
    if (!args.ok()) return Fail(std::string(args.status().message()));
    run.cluster.agent_args = start.agent_args = *args;
  }
  if (*run_cmd) {
    run.temp_dir = temp_dir;
    run.strict = strict;
    run.runtime_env_file = runtime_env_file;
    run.runtime_env_json = runtime_env_json;
    run.working_dir = working_dir;
    if (run.reload && run.non_blocking) return Fail("--reload cannot be used with --non-blocking.");
    return CmdRun(run);
  }
  if (*start_cmd) {
    if (!labels.empty()) {
      auto j = nlohmann::json::parse(labels, nullptr, false);
      bool ok = j.is_object();
      for (auto& [k, v] : j.items()) ok &= v.is_string();
      if (!ok) return Fail("--labels: must be a JSON object of strings (got " + labels + ")");
      start.agent_args.insert(start.agent_args.end(), {"--labels", labels});
    }
    if (!join_address.empty()) return CmdStartWorker(start, temp_dir, join_address);
    if (http_location_opt->count() > 0) {
      start.proxy_location = http_location == "NoServer" ? "Disabled" : http_location;
    }
    return CmdStart(start, temp_dir, start_app_dir, start_session);
  }
  if (*stop_cmd) return CmdStop(temp_dir);
  if (*deploy_cmd) {
    auto env = detail::RuntimeEnvFromFlags(runtime_env_file, runtime_env_json, working_dir);
    if (!env.ok()) return Fail(std::string(env.status().message()));
    return CmdDeploy(deploy_target, deploy_kv, DashboardAddress(address, root), deploy_name,
                     deploy_prefix, deploy_app_dir, strict, *env);
  }
  if (*config_cmd) return CmdConfig(DashboardAddress(address, root), name);
  if (*status_cmd) return CmdStatus(DashboardAddress(address, root), name);
  if (*shutdown_cmd) return CmdShutdown(DashboardAddress(address, root), yes);
  if (*drain_cmd) {
    return CmdDrainNode(DashboardAddress(address, root), drain_node_id, drain_deadline_s);
  }
  if (*build_cmd) return CmdBuild(build_targets, build_app_dir, build_output, build_grpc_services);
  return 1;
}

}  // namespace serve::cli
