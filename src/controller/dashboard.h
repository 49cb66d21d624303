#pragma once

// The Serve page of the dashboard and what only it needs, served on the dashboard port next to
// the REST API: the page's static files and the tail of a replica's log.

#include <optional>
#include <string>

#include "controller/rest_api.h"
#include "rpc/http_server.h"

namespace serve::controller {

struct DashboardOptions {
  /// Root of the static files: serve/index.html, serve/app.js, vendor/uPlot.iife.min.js, ...
  /// Empty: the page answers 404 with a hint.
  std::string web_dir;
  /// <session>/logs: replica logs outside it are never read.
  std::string logs_dir;
};

/// The web root: $SERVE_WEB_DIR, else <executable dir>/../share/serve/web (the layout of both
/// the build tree and an install), else "" when that has no serve/index.html.
std::string FindWebDir();

/// Answers the dashboard's routes, or nullopt for any other path (the REST API's):
///   GET /, /serve, /serve/                    the Serve page (serve/index.html)
///   GET /static/<path>                        a file under `web_dir`; 404 for unknown files
///                                             and for paths with "..", "." or odd characters
///   GET /api/serve/replicas/<id>/logs[?lines=N]
///                                             the last N (default 200, at most 10000) lines of
///                                             the replica's log, at most 1 MiB; 404 for an
///                                             unknown replica or a missing log, 400 for a bad N
std::optional<rpc::HttpServerResponse> HandleDashboard(const DashboardOptions& options,
                                                       ControllerApi& api,
                                                       const rpc::HttpServerRequest& request);

/// The last `max_lines` lines of the file, reading at most `max_bytes` from its end (a cut first
/// line is dropped); nullopt when it cannot be read.
std::optional<std::string> TailFile(const std::string& path, size_t max_lines, size_t max_bytes);

}  // namespace serve::controller
