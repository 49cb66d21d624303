#include "cli/cli.h"

int main(int argc, char** argv) { return serve::cli::RunCli(argc, argv); }
