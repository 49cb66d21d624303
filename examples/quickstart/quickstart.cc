// The quickstart: a deployment that answers "Hello world!".
//   serve run quickstart:app        then    curl localhost:8000/
#include <serve/serve.h>

class HelloWorld {
 public:
  std::string operator()(const serve::HttpRequest& request) {
    serve::logger().info("Handling " + request.method + " " + request.path);
    std::string name = request.query("name", "world");
    return "Hello " + name + "!";
  }
};
SERVE_DEPLOYMENT(HelloWorld);

SERVE_APP(app, serve::deployment<HelloWorld>().bind());
