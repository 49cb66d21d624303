#pragma once

namespace serve::cli {

/// The `serve` command line: parses argv, runs the command, returns the exit code.
int RunCli(int argc, char** argv);

}  // namespace serve::cli
