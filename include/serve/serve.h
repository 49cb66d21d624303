#pragma once

// The serve SDK: write deployments in C++, build them into a shared library with
// serve_add_app(), run them with `serve run <module>:<app>`.
//
// Threading in a replica, in short (the contract: serve::Concurrency in deployment.h; awaits in
// task.h; handles in handle.h): handlers of different requests run concurrently unless the class
// opts into Concurrency::kSerialized; synchronous handlers run on a pool of up to
// max_ongoing_requests threads; serve::Task handlers hold no thread while suspended and resume on
// the replica's executor.
#include <serve/context.h>
#include <serve/deployment.h>
#include <serve/duration.h>
#include <serve/errors.h>
#include <serve/grpc.h>
#include <serve/handle.h>
#include <serve/http.h>
#include <serve/json.h>
#include <serve/metrics.h>
#include <serve/options.h>
#include <serve/stream.h>
#include <serve/task.h>
#include <serve/typed_handle.h>
#include <serve/version.h>
