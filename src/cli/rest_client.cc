#include "cli/rest_client.h"

#include <curl/curl.h>

#include "rpc/auth.h"

namespace serve::cli {
namespace {
size_t Append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
}  // namespace

absl::StatusOr<RestResponse> RestCall(const std::string& method, const std::string& url,
                                      const std::string& body, double timeout_s) {
  static const bool initialized = curl_global_init(CURL_GLOBAL_DEFAULT) == 0;
  (void)initialized;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("cannot initialise libcurl");
  RestResponse resp;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  if (std::string token = rpc::ClusterToken(); !token.empty()) {
    headers = curl_slist_append(headers, ("Authorization: " + rpc::BearerValue(token)).c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_s * 1000));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp.body);
  if (method == "PUT" || method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError("Could not reach the serve REST API at " + url + ": " +
                                  curl_easy_strerror(rc) +
                                  ". Is serve running (`serve start` or `serve run`)?");
  }
  return resp;
}

}  // namespace serve::cli
