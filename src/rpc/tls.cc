#include "rpc/tls.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>

#include "absl/strings/str_cat.h"

namespace serve::rpc {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Bio = std::unique_ptr<BIO, BioFree>;

absl::StatusOr<std::string> ReadField(const char* field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " '", path, "' cannot be read: ", std::strerror(errno)));
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Bio MemBio(const std::string& text) {
  return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// OpenSSL's last error, without its codes ("bad decrypt").
std::string LastSslError() {
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return "no PEM data";
  const char* reason = ERR_reason_error_string(e);
  return reason ? reason : "unknown error";
}

struct PasswordUse {
  const std::string* password;
  bool asked = false;
};

// Never prompts on a terminal: no password given means the encrypted key cannot be read.
int PasswordCallback(char* buf, int size, int /*rwflag*/, void* u) {
  auto* use = static_cast<PasswordUse*>(u);
  use->asked = true;
  if (use->password->empty() || static_cast<int>(use->password->size()) > size) return 0;
  std::memcpy(buf, use->password->data(), use->password->size());
  return static_cast<int>(use->password->size());
}

}  // namespace

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files) {
  if (files.keyfile.empty() != files.certfile.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(files.keyfile.empty() ? "ssl_certfile" : "ssl_keyfile",
                     ": ssl_keyfile and ssl_certfile must be given together"));
  }
  ERR_clear_error();
  TlsMaterial m;
  auto cert_text = ReadField("ssl_certfile", files.certfile);
  if (!cert_text.ok()) return cert_text.status();
  Bio cert_bio = MemBio(*cert_text);
  std::unique_ptr<X509, X509Free> cert(
      PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ssl_certfile '", files.certfile, "' holds no PEM certificate: ", LastSslError()));
  }
  m.cert_chain_pem = *std::move(cert_text);

  auto key_text = ReadField("ssl_keyfile", files.keyfile);
  if (!key_text.ok()) return key_text.status();
  Bio key_bio = MemBio(*key_text);
  PasswordUse use{&files.keyfile_password};
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, PasswordCallback, &use));
  if (!key) {
    std::string why = LastSslError();
    if (use.asked && files.keyfile_password.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ssl_keyfile '", files.keyfile, "' is encrypted: give its ssl_keyfile_password"));
    }
    if (use.asked) {
      return absl::InvalidArgumentError(absl::StrCat("ssl_keyfile '", files.keyfile,
                                                     "' cannot be decrypted with "
                                                     "ssl_keyfile_password: ",
                                                     why));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("ssl_keyfile '", files.keyfile, "' holds no PEM private key: ", why));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("ssl_keyfile '", files.keyfile,
                                                   "' does not match the certificate in "
                                                   "ssl_certfile '",
                                                   files.certfile, "'"));
  }
  Bio out(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return absl::InternalError("cannot encode the private key: " + LastSslError());
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  m.private_key_pem.assign(data, static_cast<size_t>(len));

  if (!files.ca_certs.empty()) {
    auto ca_text = ReadField("ssl_ca_certs", files.ca_certs);
    if (!ca_text.ok()) return ca_text.status();
    Bio ca_bio = MemBio(*ca_text);
    std::unique_ptr<X509, X509Free> first(
        PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr));
    if (!first) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ssl_ca_certs '", files.ca_certs, "' holds no PEM certificate: ", LastSslError()));
    }
    m.ca_certs_pem = *std::move(ca_text);
  }
  return m;
}

std::shared_ptr<boost::asio::ssl::context> MakeServerSslContext(const TlsMaterial& material) {
  namespace ssl = boost::asio::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  ctx->use_certificate_chain(boost::asio::buffer(material.cert_chain_pem));
  ctx->use_private_key(boost::asio::buffer(material.private_key_pem), ssl::context::pem);
  if (!material.ca_certs_pem.empty()) {
    ctx->add_certificate_authority(boost::asio::buffer(material.ca_certs_pem));
  }
  return ctx;
}

}  // namespace serve::rpc
