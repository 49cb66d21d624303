// A program outside the cluster using the client API: connect (or, with --start, let run()
// start an instance), run an app, call it through a handle, read the status, delete the app,
// shut serve down. Prints one JSON line per step.
#include <serve/client.h>
#include <serve/http.h>

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: client_demo TEMP_DIR APP_DIR [--start]\n";
    return 2;
  }
  bool start = argc > 3 && std::string(argv[3]) == "--start";
  try {
    serve::RunOptions calc;
    if (start) {
      // No connect(): run() finds no instance under TEMP_DIR and starts one (free ports).
      calc.start.temp_dir = argv[1];
      calc.start.http_port = 0;
      calc.start.dashboard_port = 0;
    } else {
      serve::ClientOptions client;
      client.temp_dir = argv[1];
      serve::connect(client);
    }
    calc.name = "calc";
    calc.route_prefix = "/calc";
    calc.app_dir = argv[2];
    calc.args = {{"increment", "2"}};
    serve::DeploymentHandle app = serve::run("composition:arithmetic_builder", calc);
    serve::HttpRequest req;
    req.query_string = "x=3";
    serve::Json out = app.remote<serve::Json>(req).result(10.0);
    std::cout << serve::Json{{"step", "call"}, {"result", out}}.dump() << std::endl;
    serve::Json apps = serve::status()["applications"];
    std::cout << serve::Json{{"step", "status"}, {"calc", apps["calc"]["status"]}}.dump()
              << std::endl;
    try {
      serve::RunOptions bad;
      bad.name = "bad";
      bad.route_prefix = "/bad";
      bad.app_dir = argv[2];
      serve::run("composition:nope", bad);
    } catch (const serve::ServeException& e) {
      std::cout << serve::Json{{"step", "bad"}, {"error", e.what()}}.dump() << std::endl;
    }
    serve::delete_app("calc");
    serve::delete_app("bad");
    std::cout << serve::Json{{"step", "deleted"}, {"apps", serve::status()["applications"]}}.dump()
              << std::endl;
    serve::shutdown();
    std::cout << serve::Json{{"step", "shutdown"}}.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "client_demo failed: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
