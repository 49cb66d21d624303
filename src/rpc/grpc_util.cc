#include "rpc/grpc_util.h"

#include <chrono>
#include <map>
#include <mutex>
#include <string_view>

#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpcpp/support/client_interceptor.h>

#include "rpc/auth.h"

namespace serve::rpc {
namespace {

std::string_view View(const grpc_slice& s) {
  return {reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(s)), GRPC_SLICE_LENGTH(s)};
}

// Checks the `authorization` metadata of every call, in gRPC's server auth filter (before any
// handler). Runs on gRPC's threads; the state is immutable.
struct TokenCheck {
  std::string token;

  static void Process(void* state, grpc_auth_context* /*context*/, const grpc_metadata* md,
                      size_t num_md, grpc_process_auth_metadata_done_cb done, void* user_data) {
    const auto* self = static_cast<const TokenCheck*>(state);
    const grpc_metadata* authorization = nullptr;
    std::string_view path;
    for (size_t i = 0; i < num_md; ++i) {
      std::string_view key = View(md[i].key);
      if (key == "authorization") authorization = &md[i];
      if (key == ":path") path = View(md[i].value);
    }
    if (authorization != nullptr &&
        TokenMatches(self->token, BearerToken(View(authorization->value)))) {
      done(user_data, authorization, 1, nullptr, 0, GRPC_STATUS_OK, nullptr);
      return;
    }
    LogRefused("gRPC call " + std::string(path.empty() ? "(unknown method)" : path.substr(0, 200)),
               authorization == nullptr ? "no cluster token" : "wrong cluster token");
    done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_UNAUTHENTICATED,
         "missing or wrong cluster token");
  }
  static void Destroy(void* state) { delete static_cast<TokenCheck*>(state); }
};

// Plaintext HTTP/2 (gRPC core's insecure credentials) with TokenCheck as the auth metadata
// processor. grpc::InsecureServerCredentials() cannot take a processor, so the core credentials
// are added to the server directly.
class TokenServerCredentials final : public grpc::ServerCredentials {
 public:
  explicit TokenServerCredentials(std::string token)
      : creds_(grpc_insecure_server_credentials_create()) {
    grpc_server_credentials_set_auth_metadata_processor(
        creds_, {&TokenCheck::Process, &TokenCheck::Destroy, new TokenCheck{std::move(token)}});
  }
  ~TokenServerCredentials() override { grpc_server_credentials_release(creds_); }
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {}

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }

  grpc_server_credentials* creds_;
};

// Adds `authorization: Bearer <token>` to a call's initial metadata.
class TokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(std::string value) : value_(std::move(value)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", value_);
    }
    methods->Proceed();
  }

 private:
  std::string value_;
};

class TokenInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    std::string token = ClusterToken();
    return token.empty() ? nullptr : new TokenInterceptor(BearerValue(token));
  }
};

}  // namespace

std::unique_ptr<grpc::Server> StartGrpcServer(const std::string& host, int requested_port,
                                              const std::vector<grpc::Service*>& services,
                                              int* port) {
  grpc::ServerBuilder builder;
  std::string token = ClusterToken();
  std::shared_ptr<grpc::ServerCredentials> creds =
      token.empty() ? grpc::InsecureServerCredentials()
                    : std::make_shared<TokenServerCredentials>(std::move(token));
  builder.AddListeningPort(host + ":" + std::to_string(requested_port), creds, port);
  builder.SetMaxReceiveMessageSize(256 * 1024 * 1024);
  builder.SetMaxSendMessageSize(256 * 1024 * 1024);
  for (auto* s : services) builder.RegisterService(s);
  auto server = builder.BuildAndStart();
  if (!server || *port == 0) return nullptr;
  return server;
}

std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<grpc::Channel>> channels;
  std::lock_guard lock(mu);
  auto& ch = channels[address];
  if (!ch) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(256 * 1024 * 1024);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> auth;
    auth.push_back(std::make_unique<TokenInterceptorFactory>());
    ch = grpc::experimental::CreateCustomChannelWithInterceptors(
        address, grpc::InsecureChannelCredentials(), args, std::move(auth));
  }
  return ch;
}

std::unique_ptr<grpc::ClientContext> ContextWithDeadline(double seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  return ctx;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace serve::rpc
