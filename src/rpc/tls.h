#pragma once

// TLS for the proxy's ingress (http_options.ssl_*): the files are read and checked once, at
// start-up, and the same material serves HTTPS (Asio/OpenSSL) and the gRPC proxy.

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace serve::rpc {

/// http_options' TLS fields (empty = not given). TLS is on when certfile is set.
struct TlsFiles {
  std::string keyfile;
  std::string certfile;
  std::string keyfile_password;
  std::string ca_certs;
  bool enabled() const { return !certfile.empty() || !keyfile.empty(); }
};

/// Checked PEM text: the certificate chain, the private key (decrypted), the CA bundle
/// ("" when ssl_ca_certs is not given).
struct TlsMaterial {
  std::string cert_chain_pem;
  std::string private_key_pem;
  std::string ca_certs_pem;
};

/// Reads the files and checks them as Python's SSLContext.load_cert_chain/load_verify_locations
/// would: keyfile and certfile both given, readable PEM, the key decrypted with
/// keyfile_password when it is encrypted, the key matching the certificate, ca_certs holding
/// at least one certificate. An error names the field and the file and says what is wrong.
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files);

/// A TLS 1.2+ server context for the material. As uvicorn with its default ssl_cert_reqs,
/// the CA bundle is loaded but client certificates are not requested.
std::shared_ptr<boost::asio::ssl::context> MakeServerSslContext(const TlsMaterial& material);

}  // namespace serve::rpc
