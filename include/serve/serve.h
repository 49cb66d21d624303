#pragma once

// The serve SDK: write deployments in C++, build them into a shared library with
// serve_add_app(), run them with `serve run <module>:<app>`.
#include <serve/context.h>
#include <serve/deployment.h>
#include <serve/errors.h>
#include <serve/handle.h>
#include <serve/http.h>
#include <serve/json.h>
#include <serve/options.h>
#include <serve/task.h>
#include <serve/version.h>
